package pageserver

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/zenithdb/zenith/pageserver/api"
	"github.com/zenithdb/zenith/repo/id"
)

// relFileName matches a relation fork's segment file name.
var relFileName = regexp.MustCompile(`^[0-9]+(_(fsm|vm|init))?(\.[0-9]+)?$`)

// relationBytes sums the relation files of a data directory (base/*/ and
// global/): what pg_database_size adds up over every database.
func relationBytes(t *testing.T, datadir string) int64 {
	t.Helper()
	dirs, _ := filepath.Glob(filepath.Join(datadir, "base", "*"))
	dirs = append(dirs, filepath.Join(datadir, "global"))
	var total int64
	for _, d := range dirs {
		entries, err := os.ReadDir(d)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			if !relFileName.MatchString(e.Name()) {
				continue
			}
			info, err := e.Info()
			if err != nil {
				t.Fatal(err)
			}
			total += info.Size()
		}
	}
	return total
}

// TestBranchSizesAndRetention checks branch_list's sizes against the
// imported data directory, and tenant_config: shown, changed, validated.
func TestBranchSizesAndRetention(t *testing.T) {
	ts := startPageServer(t)
	conn := ts.connect(t)
	tid := id.NewTenantID()
	tenant := tid.String()
	rows(t, conn, "tenant_create "+tenant)
	datadir := initdbDir(t)
	if err := importDataDir(conn, tid, "main", datadir, nil); err != nil {
		t.Fatal(err)
	}
	rows(t, conn, fmt.Sprintf("branch_create %s dev main", tenant))
	list := rows(t, conn, "branch_list "+tenant)
	main, dev := branchNamed(t, list, "main"), branchNamed(t, list, "dev")
	want := relationBytes(t, datadir)
	for _, b := range []map[string]string{main, dev} {
		if got := b["logical_size"]; got != strconv.FormatInt(want, 10) {
			t.Errorf("branch %s: logical_size %s, want %d (the relation files of the imported data directory)", b["name"], got, want)
		}
	}
	if n, _ := strconv.ParseInt(main["layer_bytes"], 10, 64); n <= 0 {
		t.Errorf("main: layer_bytes %s, want the import's layers", main["layer_bytes"])
	}
	if dev["layer_bytes"] != "0" {
		t.Errorf("dev, just branched: layer_bytes %s, want 0 (it reads main's)", dev["layer_bytes"])
	}
	resp, err := http.Get("http://" + ts.httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	metric := fmt.Sprintf("zenith_pageserver_logical_size_bytes{tenant_id=%q,timeline_id=%q} ", tenant, main["timeline_id"])
	var value float64
	for _, line := range strings.Split(string(metrics), "\n") {
		if v, ok := strings.CutPrefix(line, metric); ok {
			value, _ = strconv.ParseFloat(v, 64)
		}
	}
	if value != float64(want) {
		t.Errorf("/metrics: %s= %v, want %d", metric, value, want)
	}

	settings := func(cmd string) map[string]string {
		out := map[string]string{}
		for _, r := range rows(t, conn, cmd) {
			out[r["setting"]] = r["value"]
		}
		return out
	}
	if got := settings("tenant_config " + tenant); got["gc_horizon"] == "" || got["pitr_interval"] == "" {
		t.Errorf("tenant_config shows %v", got)
	}
	got := settings(fmt.Sprintf("tenant_config %s gc_horizon=1073741824 pitr_interval=24h", tenant))
	if got["gc_horizon"] != "1073741824" || got["pitr_interval"] != "24h0m0s" {
		t.Errorf("tenant_config after the change shows %v", got)
	}
	_, err = queryRows(conn, fmt.Sprintf("tenant_config %s gc_horizon=-5", tenant))
	wantSQLState(t, "tenant_config with a negative horizon", err, "22023")
	_, err = queryRows(conn, fmt.Sprintf("tenant_config %s checkpoint_distance=5", tenant))
	wantSQLState(t, "tenant_config of a setting it does not change", err, "22023")
	// The HTTP twin.
	req, _ := http.NewRequest(http.MethodPut, "http://"+ts.httpAddr+"/v1/tenant/"+tenant+"/config", strings.NewReader(`{"pitr_interval": "1h"}`))
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	var put []api.TenantSetting
	_ = json.NewDecoder(resp.Body).Decode(&put)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !slices.Contains(put, api.TenantSetting{Name: "pitr_interval", Value: "1h0m0s"}) ||
		!slices.Contains(put, api.TenantSetting{Name: "gc_horizon", Value: "1073741824"}) {
		t.Errorf("PUT config {pitr_interval: 1h}: %d %v", resp.StatusCode, put)
	}
	req, _ = http.NewRequest(http.MethodPut, "http://"+ts.httpAddr+"/v1/tenant/"+tenant+"/config", strings.NewReader(`{"gc_horizon": -1}`))
	if resp, err = http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("PUT config {gc_horizon: -1}: %d, want 400", resp.StatusCode)
	}
	b, err := os.ReadFile(filepath.Join(ts.srv.dir, "tenants", tenant, "config.toml"))
	if err != nil || !regexp.MustCompile(`gc_horizon = 1073741824`).Match(b) {
		t.Errorf("config.toml after tenant_config (%v):\n%s", err, b)
	}
}
