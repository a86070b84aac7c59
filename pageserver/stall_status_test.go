package pageserver

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zenithdb/zenith/pageserver/httpapi"
	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/tomlconf"
	"github.com/zenithdb/zenith/repo/value"
	"github.com/zenithdb/zenith/repo/vfs"
)

// TestStallReported holds a timeline's layer-file fsync in a running page
// server and checks every place that must say so: the timeline in the
// HTTP API, the status command and /v1/status, and /metrics; and that
// each clears once the fsync returns.
func TestStallReported(t *testing.T) {
	faulty := vfs.NewFaulty(vfs.Default)
	ps := startPageServerWith(t, func(c *Config) {
		c.FS = faulty
		c.StallThreshold = tomlconf.Duration(time.Nanosecond)
	})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	tnt, err := ps.srv.createTenant(ctx, id.TenantID{}, 0)
	if err != nil {
		t.Fatal(err)
	}
	tl, err := tnt.tn.CreateTimeline(id.NewTimelineID(), 0x100)
	if err != nil {
		t.Fatal(err)
	}
	gate := vfs.NewGate(vfs.OpSync, func(name string) bool {
		return strings.Contains(name, filepath.Join("timelines", tl.ID().String()))
	})
	faulty.SetRule(gate.Rule)
	defer gate.Release()
	rel := pgdata.RelFileNode{SpcNode: 1663, DbNode: 5, RelNode: 16384}
	if err := tl.Put(key.RelBlock(rel, pgdata.ForkMain, 0), 0x200, value.Image(make([]byte, 8192))); err != nil {
		t.Fatal(err)
	}
	if err := tl.FinishWrite(0x200, 0x100); err != nil {
		t.Fatal(err)
	}
	flushed := make(chan error, 1)
	go func() { flushed <- tl.Flush(ctx) }()
	<-gate.Held()

	get := func(path string) []byte {
		t.Helper()
		resp, err := http.Get("http://" + ps.httpAddr + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != http.StatusOK {
			t.Fatalf("GET %s: %s %v\n%s", path, resp.Status, err, b)
		}
		return b
	}
	timelineStalled := func() *httpapi.Stall {
		t.Helper()
		var infos []httpapi.TimelineInfo
		if err := json.Unmarshal(get("/v1/tenant/"+tnt.id.String()+"/timeline"), &infos); err != nil {
			t.Fatal(err)
		}
		if len(infos) != 1 {
			t.Fatalf("timelines %+v, want one", infos)
		}
		return infos[0].Stalled
	}
	status := func() Status {
		t.Helper()
		var st Status
		if err := json.Unmarshal(get("/v1/status"), &st); err != nil {
			t.Fatal(err)
		}
		return st
	}
	metric := fmt.Sprintf(`zenith_pageserver_flush_stalled{tenant_id="%s",timeline_id="%s"}`, tnt.id, tl.ID())
	metricValue := func() string {
		t.Helper()
		for _, line := range strings.Split(string(get("/metrics")), "\n") {
			if v, ok := strings.CutPrefix(line, metric+" "); ok {
				return v
			}
		}
		t.Fatalf("/metrics has no %s", metric)
		return ""
	}
	conn := ps.connect(t)

	began := time.Now()
	if s := timelineStalled(); s == nil || s.Operation != repo.OpLayerWrite || s.Since.After(began) {
		t.Errorf("timeline info stalled = %+v, want %q since before %v", s, repo.OpLayerWrite, began)
	}
	if st := status(); st.StalledTimelines != 1 || !strings.Contains(st.Stalled, tl.ID().String()) || !strings.Contains(st.Stalled, repo.OpLayerWrite) || st.StalledSince == "" {
		t.Errorf("/v1/status stalled %q since %q, %d timelines; want this timeline's %q", st.Stalled, st.StalledSince, st.StalledTimelines, repo.OpLayerWrite)
	}
	if row := rows(t, conn, "status")[0]; row["stalled_timelines"] != "1" || !strings.Contains(row["stalled"], tl.ID().String()) || row["stalled_since"] == "" {
		t.Errorf("status command: stalled %q since %q, %s timelines; want this timeline", row["stalled"], row["stalled_since"], row["stalled_timelines"])
	}
	if v := metricValue(); v != "1" {
		t.Errorf("%s = %s while held, want 1", metric, v)
	}
	if got := tl.DiskConsistentLSN(); got >= 0x200 {
		t.Errorf("disk-consistent LSN %v before the fsync returned", got)
	}

	gate.Release()
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
	if s := timelineStalled(); s != nil {
		t.Errorf("timeline info stalled = %+v after the release", s)
	}
	if st := status(); st.StalledTimelines != 0 || st.Stalled != "" || st.StalledSince != "" {
		t.Errorf("/v1/status stalled %q since %q, %d timelines after the release", st.Stalled, st.StalledSince, st.StalledTimelines)
	}
	if v := metricValue(); v != "0" {
		t.Errorf("%s = %s after the release, want 0", metric, v)
	}
}
