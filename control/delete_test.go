package control_test

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zenithdb/zenith/pageserver"
	"github.com/zenithdb/zenith/pageserver/api"
)

// TestBranchDelete runs zenith branch delete against the real binary: a
// branch with a child or a running compute node is refused, --force
// destroys the node, and a page server killed (SIGKILL) in the middle of
// a delete has either not begun it (before the commit point) or finishes
// it (after) when it restarts, and loads and serves every other branch.
func TestBranchDelete(t *testing.T) {
	env := newSKEnv(t, 0)
	pg := env.Postgres.CreateStart("main")
	conn := pg.Connect()
	exec1(t, conn, "CREATE TABLE t (id int PRIMARY KEY)")
	exec1(t, conn, "INSERT INTO t SELECT generate_series(1, 1000)")
	for _, args := range [][]string{{"dev"}, {"feature", "dev"}, {"undone"}, {"completed"}} {
		env.Zenith(append([]string{"branch"}, args...)...)
	}
	env.Postgres.CreateStart("dev")
	tenant, _ := env.nodeOf(t, "main")
	timelines := filepath.Join(env.RepoDir, "pageserver", "tenants", tenant, "timelines")

	mustFail(t, env.Env, "branch dev has child branches feature: delete them first", "branch", "delete", "dev")
	mustFail(t, env.Env, `unknown branch "nosuch"`, "branch", "delete", "nosuch")
	// A stopped node of the branch does not hold it; it goes with it.
	env.Postgres.CreateStart("feature").Stop()
	if out := env.Zenith("branch", "delete", "feature"); !strings.Contains(out, "deleted branch feature") {
		t.Errorf("zenith branch delete feature printed %q", out)
	}
	if out := env.Zenith("pg", "list"); strings.Contains(out, "feature") {
		t.Errorf("zenith pg list after the delete still shows the stopped node feature:\n%s", out)
	}
	mustFail(t, env.Env, "compute nodes dev are running on it", "branch", "delete", "dev")
	devTL := branchTimeline(t, env, "dev")
	env.Zenith("branch", "delete", "dev", "--force")
	if out := env.Zenith("pg", "list"); strings.Contains(out, "dev") {
		t.Errorf("zenith pg list after branch delete --force still shows node dev:\n%s", out)
	}
	if _, err := os.Stat(filepath.Join(timelines, devTL)); !os.IsNotExist(err) {
		t.Errorf("dev's timeline directory after its delete: %v", err)
	}

	// Killed before the commit point: undone.
	undoneTL := branchTimeline(t, env, "undone")
	killedDelete(t, env, "before-commit", "undone")
	if got := branchTimeline(t, env, "undone"); got != undoneTL {
		t.Fatalf("after a delete killed before its commit point, branch undone is %q, want timeline %s", got, undoneTL)
	}
	if got := queryString(t, env.Postgres.CreateStart("undone", "--name", "undone2").Connect(), "SELECT count(*)::text FROM t"); got != "1000" {
		t.Errorf("a compute on the branch whose delete was undone counts %s rows, want 1000", got)
	}

	// Killed after it: completed at restart.
	completedTL := branchTimeline(t, env, "completed")
	killedDelete(t, env, "after-commit", "completed")
	if got := branchTimeline(t, env, "completed"); got != "" {
		t.Errorf("after a delete killed past its commit point, branch completed is still there (timeline %s)", got)
	}
	for _, dir := range []string{
		filepath.Join(timelines, completedTL),
		filepath.Join(timelines, completedTL+".deleted"),
		filepath.Join(env.RepoDir, "pageserver", "tenants", tenant, "wal", completedTL),
	} {
		if _, err := os.Stat(dir); !os.IsNotExist(err) {
			t.Errorf("%s after the delete was finished: %v", dir, err)
		}
	}
	// main still takes commits and serves a new compute.
	exec1(t, conn, "INSERT INTO t VALUES (1001)")
	if got := queryString(t, env.Postgres.CreateStart("main", "--name", "main2", "--lsn", currentLSN(t, conn).String()).Connect(), "SELECT count(*)::text FROM t"); got != "1001" {
		t.Errorf("a compute on main after the restarts counts %s rows, want 1001", got)
	}
}

// killedDelete restarts the page server with FailDeleteEnv=point, runs
// zenith branch delete name (which the kill makes fail), and restarts the
// page server without it.
func killedDelete(t *testing.T, env *skEnv, point, name string) {
	t.Helper()
	env.Zenith("pageserver", "stop")
	t.Setenv(pageserver.FailDeleteEnv, point)
	env.Zenith("pageserver", "start")
	if _, _, err := env.Run("branch", "delete", name, "--force"); err == nil {
		t.Fatalf("zenith branch delete %s succeeded with %s=%s", name, pageserver.FailDeleteEnv, point)
	}
	t.Setenv(pageserver.FailDeleteEnv, "")
	env.Zenith("pageserver", "start")
}

// branchTimeline returns the timeline id of the branch, "" if there is
// none.
func branchTimeline(t *testing.T, env *skEnv, name string) string {
	t.Helper()
	var branches []api.BranchInfo
	if err := json.Unmarshal([]byte(env.Zenith("branch", "list", "--json")), &branches); err != nil {
		t.Fatal(err)
	}
	for _, b := range branches {
		if b.Name == name {
			return b.Timeline.String()
		}
	}
	return ""
}

// TestTenantDelete deletes a second tenant; the default one is refused.
func TestTenantDelete(t *testing.T) {
	env := newSKEnv(t, 0)
	out := env.Zenith("tenant", "create")
	other := strings.Fields(out)[2]
	tenantDir := filepath.Join(env.RepoDir, "pageserver", "tenants", other)
	if _, err := os.Stat(tenantDir); err != nil {
		t.Fatal(err)
	}
	mustFail(t, env.Env, "is the repository's default tenant", "tenant", "delete", env.cfg.DefaultTenant.String())
	mustFail(t, env.Env, "unknown tenant", "tenant", "delete", "0123456789abcdef0123456789abcdef")
	env.Postgres.CreateStart("main", "--tenant", other)
	mustFail(t, env.Env, "compute nodes main are running on it", "tenant", "delete", other)
	if out := env.Zenith("tenant", "delete", other, "--force"); !strings.Contains(out, "deleted tenant "+other) {
		t.Errorf("zenith tenant delete printed %q", out)
	}
	if out := env.Zenith("tenant", "list"); strings.Contains(out, other) {
		t.Errorf("zenith tenant list after the delete:\n%s", out)
	}
	if _, err := os.Stat(tenantDir); !os.IsNotExist(err) {
		t.Errorf("tenant directory after the delete: %v", err)
	}
}

// TestBranchDeleteSafekeepers deletes a branch whose compute streamed to
// three safekeepers: its WAL goes from each of them too, and main's stays.
func TestBranchDeleteSafekeepers(t *testing.T) {
	env := newSKEnv(t, 3)
	env.Postgres.CreateStart("main")
	env.Zenith("branch", "dev")
	exec1(t, env.Postgres.CreateStart("dev").Connect(), "CREATE TABLE t AS SELECT generate_series(1, 100) AS id")
	tenant, devTL := env.nodeOf(t, "dev")
	_, mainTL := env.nodeOf(t, "main")
	skDir := func(n int, tl string) string {
		return filepath.Join(env.RepoDir, "safekeepers", fmt.Sprintf("sk%d", n), tenant, tl)
	}
	for n := 1; n <= 3; n++ {
		if _, err := os.Stat(skDir(n, devTL)); err != nil {
			t.Fatalf("safekeeper %d has no WAL of dev before the delete: %v", n, err)
		}
	}
	env.Zenith("branch", "delete", "dev", "--force")
	for n := 1; n <= 3; n++ {
		if _, err := os.Stat(skDir(n, devTL)); !os.IsNotExist(err) {
			t.Errorf("safekeeper %d: dev's WAL directory after the delete: %v", n, err)
		}
		if _, err := os.Stat(skDir(n, mainTL)); err != nil {
			t.Errorf("safekeeper %d: main's WAL directory after dev's delete: %v", n, err)
		}
	}
}
