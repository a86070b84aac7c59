package control_test

import (
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zenithdb/zenith/pageserver/api"
)

// TestRetentionAndSizes sets a tenant's retention from the CLI (shown,
// validated), runs GC with it, and checks that a branch point below the
// GC cut-off is refused naming the cut-off, and that zenith branch,
// zenith branch list --json and zenith tenant list show the sizes.
func TestRetentionAndSizes(t *testing.T) {
	env := newSKEnv(t, 0)
	pg := env.Postgres.CreateStart("main")
	conn := pg.Connect()
	exec1(t, conn, "CREATE TABLE t (id int, payload text)")
	early := currentLSN(t, conn)
	exec1(t, conn, "INSERT INTO t SELECT g, repeat('x', 200) FROM generate_series(1, 40000) g")
	exec1(t, conn, "CHECKPOINT")
	end := currentLSN(t, conn)
	tableBytes := queryString(t, conn, "SELECT pg_relation_size('t')::text")

	out := env.Zenith("tenant", "config", "--pitr", "0s", "--gc-horizon", "1MiB")
	for _, want := range []string{"gc_horizon", "1.0 MiB (1048576 bytes)", "pitr_interval", "0s", "GC cut-off", "main"} {
		if !strings.Contains(out, want) {
			t.Errorf("zenith tenant config does not show %q:\n%s", want, out)
		}
	}
	mustFail(t, env.Env, `--gc-horizon "lots"`, "tenant", "config", "--gc-horizon", "lots")
	mustFail(t, env.Env, `--pitr "-1h"`, "tenant", "config", "--pitr=-1h")
	mustFail(t, env.Env, "unknown tenant", "tenant", "config", "0123456789abcdef0123456789abcdef")

	// Wait for the page server to have everything, then GC now.
	deadline := time.Now().Add(time.Minute)
	for branch(t, env, "main").LastRecordLSN < end && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
	}
	resp, err := http.Post("http://"+env.cfg.Pageserver.ListenHTTP+"/v1/tenant/"+env.cfg.DefaultTenant.String()+"/gc", "", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("POST gc: %s", resp.Status)
	}
	main := branch(t, env, "main")
	if main.GCCutoffLSN <= early {
		t.Fatalf("main's GC cut-off %v after GC with a 1 MiB horizon is not above %v, %v of WAL before its end %v",
			main.GCCutoffLSN, early, end-early, main.LastRecordLSN)
	}
	mustFail(t, env.Env, "it is before the GC cut-off of branch main, "+main.GCCutoffLSN.String(), "branch", "old", "main@"+early.String())
	if out := env.Zenith("tenant", "config"); !strings.Contains(out, main.GCCutoffLSN.String()) {
		t.Errorf("zenith tenant config does not show main's cut-off %v:\n%s", main.GCCutoffLSN, out)
	}

	// Sizes.
	env.Zenith("branch", "dev")
	dev := branch(t, env, "dev")
	if main.LogicalSize < mustInt(t, tableBytes) || main.LayerBytes <= 0 || main.WALBytes <= 0 {
		t.Errorf("main: logical %d (table t alone is %s), layers %d, WAL %d: want the table counted and both stores non-empty",
			main.LogicalSize, tableBytes, main.LayerBytes, main.WALBytes)
	}
	// A new branch holds no layers (it reads main's), only its empty WAL
	// store's control file.
	if dev.LayerBytes != 0 || dev.WALBytes > 4096 || dev.LogicalSize != main.LogicalSize {
		t.Errorf("dev, just branched: layers %d, WAL %d, logical %d; want 0, at most 4 KiB and main's %d", dev.LayerBytes, dev.WALBytes, dev.LogicalSize, main.LogicalSize)
	}
	tree := env.Zenith("branch")
	if !strings.Contains(tree, "dev @ ") || !strings.Contains(tree, "logical ") || !strings.Contains(tree, "physical ") {
		t.Errorf("zenith branch does not show the sizes:\n%s", tree)
	}
	list := env.Zenith("tenant", "list")
	if !strings.Contains(list, "LOGICAL") || !strings.Contains(list, "dev") || !strings.Contains(list, "(2 branches)") {
		t.Errorf("zenith tenant list does not show the branches' sizes:\n%s", list)
	}
}

// branch returns branch name from zenith branch list --json.
func branch(t *testing.T, env *skEnv, name string) api.BranchInfo {
	t.Helper()
	var branches []api.BranchInfo
	if err := json.Unmarshal([]byte(env.Zenith("branch", "list", "--json")), &branches); err != nil {
		t.Fatal(err)
	}
	for _, b := range branches {
		if b.Name == name {
			return b
		}
	}
	t.Fatalf("no branch %s", name)
	return api.BranchInfo{}
}

func mustInt(t *testing.T, s string) int64 {
	t.Helper()
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil {
		t.Fatal(err)
	}
	return n
}
