package control_test

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/zenithdb/zenith/control/zenithtest"
)

// nodeProcesses returns the command lines of the live processes of
// compute node name (its postgres and their children, its FUSE server):
// those whose command line names the node's directory or whose working
// directory is in it.
func nodeProcesses(t *testing.T, env *zenithtest.Env, name string) []string {
	t.Helper()
	dirs, err := filepath.Glob(filepath.Join(env.RepoDir, "pgdatadirs", "tenants", "*", name))
	if err != nil || len(dirs) != 1 {
		t.Fatalf("directory of compute node %s: %v, %v", name, dirs, err)
	}
	var out []string
	for _, pid := range env.Processes() {
		b, err := os.ReadFile(filepath.Join("/proc", strconv.Itoa(pid), "cmdline"))
		if err != nil {
			continue
		}
		cmdline := strings.TrimRight(strings.ReplaceAll(string(b), "\x00", " "), " ")
		cwd, _ := os.Readlink(filepath.Join("/proc", strconv.Itoa(pid), "cwd"))
		if strings.Contains(cmdline+" ", dirs[0]+"/") || strings.Contains(cmdline+" ", dirs[0]+" ") || strings.HasPrefix(cwd, dirs[0]+"/") {
			out = append(out, cmdline)
		}
	}
	return out
}

// checkNodeGone fails the test if compute node name left a mount or a
// process behind.
func checkNodeGone(t *testing.T, env *zenithtest.Env, name string) {
	t.Helper()
	if m := mountsIn(env.Dir); len(m) > 0 {
		t.Errorf("compute node %s left %v mounted", name, m)
	}
	// A process killed just now may take a moment to be reaped.
	deadline := time.Now().Add(10 * time.Second)
	for {
		procs := nodeProcesses(t, env, name)
		if len(procs) == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Errorf("compute node %s left processes behind: %q", name, procs)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// countAcked returns the rows of table acked and their largest id.
func countAcked(ctx context.Context, t *testing.T, conn *pgx.Conn) (n, max int) {
	t.Helper()
	if err := conn.QueryRow(ctx, "SELECT count(*), coalesce(max(id), 0) FROM acked").Scan(&n, &max); err != nil {
		t.Fatal(err)
	}
	return n, max
}

// TestLazyPageserverKilledMidScan kills the page server (SIGKILL) while
// a lazy compute is in the middle of a scan of a table it has not read
// whole, just after commits it acknowledged: the scan fails with an I/O
// error (an ERROR, not a PANIC); once the page server is started again
// the same node scans the table whole and has every acknowledged row,
// and so does an eager node started after it. pg stop leaves no mount
// and no process of the node behind.
func TestLazyPageserverKilledMidScan(t *testing.T) {
	skipUnlessFUSE(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	env := zenithtest.New(t, nil)
	loader := env.Postgres.CreateStart("main", "--eager")
	// About 3000 blocks: far more than a scan's read-ahead.
	if _, err := loader.Connect().Exec(ctx, "CREATE TABLE big AS SELECT g, repeat('y', 200) AS pad FROM generate_series(1, 100000) g"); err != nil {
		t.Fatal(err)
	}
	loader.Stop()

	pg := createLazyCold(t, env, "lazy")
	conn := pg.Connect()
	exec1(t, conn, "CREATE TABLE acked (id int PRIMARY KEY)")
	const acked = 200
	for i := 1; i <= acked; i++ {
		exec1(t, conn, "INSERT INTO acked VALUES ($1)", i)
	}
	tx, err := conn.Begin(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "DECLARE c NO SCROLL CURSOR FOR SELECT g FROM big"); err != nil {
		t.Fatal(err)
	}
	if _, err := tx.Exec(ctx, "FETCH 1000 FROM c"); err != nil {
		t.Fatalf("the scan's first rows: %v", err)
	}
	env.Zenith("pageserver", "stop", "--immediate")
	_, err = tx.Exec(ctx, "FETCH ALL FROM c")
	if err == nil || !strings.Contains(err.Error(), "Input/output error") {
		t.Fatalf("the rest of the scan with the page server killed: %v; want an I/O error", err)
	}
	t.Logf("mid-scan, the page server killed: %v", err)
	_ = tx.Rollback(ctx)

	env.Zenith("pageserver", "start")
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM big").Scan(&n); err != nil || n != 100000 {
		t.Fatalf("the scan once the page server is back: %d, %v; want 100000", n, err)
	}
	if n, max := countAcked(ctx, t, conn); n != acked || max != acked {
		t.Fatalf("the lazy node after the page server's restart: %d rows up to %d, want %d", n, max, acked)
	}
	conn.Close(ctx)
	pg.Stop()
	checkNodeGone(t, env, "lazy")

	check := env.Postgres.CreateStart("main", "--name", "check", "--eager")
	if n, max := countAcked(ctx, t, check.Connect()); n != acked || max != acked {
		t.Fatalf("an eager node after the page server's restart: %d rows up to %d, want %d", n, max, acked)
	}
	check.Stop()
}
