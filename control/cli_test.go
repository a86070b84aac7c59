package control_test

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/zenithdb/zenith/control/zenithtest"
	"github.com/zenithdb/zenith/repo/pgcluster"
)

// mustFail runs `zenith args...`, which must exit non-zero with a message
// containing want on stderr.
func mustFail(t *testing.T, env *zenithtest.Env, want string, args ...string) {
	t.Helper()
	out, errOut, err := env.Run(args...)
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		t.Errorf("zenith %s: err = %v, want a non-zero exit\nstdout: %s\nstderr: %s", strings.Join(args, " "), err, out, errOut)
		return
	}
	if !strings.Contains(errOut, want) {
		t.Errorf("zenith %s: stderr %q does not say %q", strings.Join(args, " "), errOut, want)
	}
}

// sqlTimeout bounds one statement of a test: a commit that the page server
// never acknowledges fails the test instead of hanging it.
const sqlTimeout = time.Minute

func exec1(t *testing.T, conn *pgx.Conn, sql string, args ...any) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), sqlTimeout)
	defer cancel()
	if _, err := conn.Exec(ctx, sql, args...); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
}

func queryString(t *testing.T, conn *pgx.Conn, sql string) string {
	t.Helper()
	var s string
	if err := conn.QueryRow(context.Background(), sql).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	return s
}

func count(t *testing.T, conn *pgx.Conn, table string) int {
	t.Helper()
	var n int
	if err := conn.QueryRow(context.Background(), "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return n
}

// pgDump returns pg_dump's output for database postgres of pg.
func pgDump(t *testing.T, pg *zenithtest.Postgres) string {
	t.Helper()
	bin, err := pgcluster.FindBinDir(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(filepath.Join(bin, "pg_dump"), "--no-sync", "--restrict-key=zenithtest", pg.ConnString+"?sslmode=disable").Output()
	if err != nil {
		t.Fatalf("pg_dump %s: %v", pg.ConnString, err)
	}
	return string(out)
}

// TestComputeRecreate destroys main's compute and creates it again: every
// committed row is back.
func TestComputeRecreate(t *testing.T) {
	env := zenithtest.New(t, nil)
	pg := env.Postgres.CreateStart("main")
	conn := pg.Connect()
	exec1(t, conn, "CREATE TABLE t (id int PRIMARY KEY, payload text)")
	for i := 0; i < 20; i++ {
		exec1(t, conn, "INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series($1::int, $1::int + 499) g", i*500)
	}
	exec1(t, conn, "CREATE INDEX ON t (payload)")
	exec1(t, conn, "DELETE FROM t WHERE id % 10 = 0")
	want := pgDump(t, pg)
	conn.Close(context.Background())
	pg.Destroy()
	if _, err := os.Stat(filepath.Join(env.RepoDir, "pgdatadirs")); err != nil {
		t.Fatal(err)
	}

	pg = env.Postgres.CreateStart("main")
	conn = pg.Connect()
	if got := count(t, conn, "t"); got != 9000 {
		t.Errorf("after re-creating the compute, t has %d rows, want 9000", got)
	}
	if got := pgDump(t, pg); got != want {
		t.Errorf("pg_dump after re-creating the compute differs from before:\n%s", diffHint(want, got))
	}
	// And it keeps working: a write after the re-creation survives a
	// clean stop and start.
	exec1(t, conn, "INSERT INTO t VALUES (100000, 'after')")
	conn.Close(context.Background())
	pg.Stop()
	pg = env.Postgres.CreateStart("main")
	if got := queryString(t, pg.Connect(), "SELECT payload FROM t WHERE id = 100000"); got != "after" {
		t.Errorf("row written after re-creation: got %q", got)
	}
}

// TestBranchAtLSNAndTime branches main at a noted LSN and at a noted time:
// each branch's pg_dump equals main's at that moment, and main has it all.
func TestBranchAtLSNAndTime(t *testing.T) {
	env := zenithtest.New(t, nil)
	pg := env.Postgres.CreateStart("main")
	conn := pg.Connect()
	exec1(t, conn, "CREATE TABLE t (id int, v text)")
	exec1(t, conn, "INSERT INTO t SELECT g, 'first' FROM generate_series(1, 1000) g")
	lsn := queryString(t, conn, "SELECT pg_current_wal_insert_lsn()::text")
	before := pgDump(t, pg)
	time.Sleep(1100 * time.Millisecond)
	at := time.Now().UTC().Format(time.RFC3339Nano)
	time.Sleep(1100 * time.Millisecond)
	exec1(t, conn, "INSERT INTO t SELECT g, 'second' FROM generate_series(1001, 2000) g")
	exec1(t, conn, "UPDATE t SET v = 'changed' WHERE id <= 10")
	exec1(t, conn, "CREATE TABLE later (x int)")
	after := pgDump(t, pg)
	if before == after {
		t.Fatal("the second writes did not change pg_dump: the test cannot tell branches apart")
	}

	env.Zenith("branch", "at_lsn", "main@"+lsn)
	env.Zenith("branch", "at_time", "main@"+at)
	tree := env.Zenith("branch")
	for _, want := range []string{"main", "at_lsn @ " + lsn, "at_time @ "} {
		if !strings.Contains(tree, want) {
			t.Errorf("zenith branch does not show %q:\n%s", want, tree)
		}
	}
	for _, b := range []string{"at_lsn", "at_time"} {
		bpg := env.Postgres.CreateStart(b)
		if got := pgDump(t, bpg); got != before {
			t.Errorf("branch %s: pg_dump differs from main's at the branch point:\n%s", b, diffHint(before, got))
		}
		// A branch is writable and its writes stay on it.
		exec1(t, bpg.Connect(), "INSERT INTO t VALUES (-1, '"+b+"')")
	}
	if got := pgDump(t, pg); got != after {
		t.Errorf("main changed after branching:\n%s", diffHint(after, got))
	}
	// A read-only node at the LSN shows the same.
	ro := env.Postgres.CreateStart("main", "--name", "ro", "--lsn", lsn)
	if got := pgDump(t, ro); got != before {
		t.Errorf("read-only node at %s: pg_dump differs from main's then:\n%s", lsn, diffHint(before, got))
	}
	if _, err := ro.Connect().Exec(context.Background(), "INSERT INTO t VALUES (0, 'ro')"); err == nil {
		t.Errorf("a write on the read-only node succeeded")
	}
}

// diffHint shows the first line where two dumps differ.
func diffHint(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) && i < len(g); i++ {
		if w[i] != g[i] {
			return fmt.Sprintf("line %d: want %q, got %q", i+1, w[i], g[i])
		}
	}
	return fmt.Sprintf("want %d lines, got %d", len(w), len(g))
}

// TestTenantsIsolated gives two tenants a branch main each, with a table of
// the same name: neither sees the other's rows.
func TestTenantsIsolated(t *testing.T) {
	env := zenithtest.New(t, nil)
	out := env.Zenith("tenant", "create")
	fields := strings.Fields(out)
	if len(fields) < 3 || fields[0] != "created" {
		t.Fatalf("tenant create printed %q", out)
	}
	other := fields[2]
	list := env.Zenith("tenant", "list")
	if !strings.Contains(list, other) || strings.Count(list, "(1 branch)") != 2 {
		t.Errorf("tenant list does not show both tenants:\n%s", list)
	}
	a := env.Postgres.CreateStart("main")
	b := env.Postgres.CreateStart("main", "--tenant", other)
	ca, cb := a.Connect(), b.Connect()
	exec1(t, ca, "CREATE TABLE t (who text)")
	exec1(t, cb, "CREATE TABLE t (who text)")
	exec1(t, ca, "INSERT INTO t SELECT 'a' FROM generate_series(1, 10)")
	exec1(t, cb, "INSERT INTO t SELECT 'b' FROM generate_series(1, 20)")
	env.Zenith("branch", "feature", "--tenant", other)
	ca.Close(context.Background())
	cb.Close(context.Background())
	a.Destroy()
	b.Destroy()

	a = env.Postgres.CreateStart("main")
	b = env.Postgres.CreateStart("main", "--tenant", other)
	if got := queryString(t, a.Connect(), "SELECT string_agg(DISTINCT who, ',') || count(*) FROM t"); got != "a10" {
		t.Errorf("default tenant's t: %q, want a10", got)
	}
	if got := queryString(t, b.Connect(), "SELECT string_agg(DISTINCT who, ',') || count(*) FROM t"); got != "b20" {
		t.Errorf("other tenant's t: %q, want b20", got)
	}
	mustFail(t, env, "unknown branch", "pg", "create", "feature")
	if tree := env.Zenith("branch", "--tenant", other); !strings.Contains(tree, "feature") {
		t.Errorf("other tenant's tree lacks its branch:\n%s", tree)
	}
}

// TestStopLeavesNoProcess: zenith stop stops compute nodes and the page
// server, and nothing of the environment runs afterwards.
func TestStopLeavesNoProcess(t *testing.T) {
	env := zenithtest.New(t, nil)
	env.Postgres.CreateStart("main")
	env.Zenith("branch", "b")
	env.Postgres.CreateStart("b")
	if len(env.Processes()) == 0 {
		t.Fatal("no processes found while running: the check below would prove nothing")
	}
	env.Zenith("stop")
	if pids := env.Processes(); len(pids) > 0 {
		t.Errorf("after zenith stop, still running: %v", pids)
	}
	if st := env.Zenith("status"); !strings.Contains(st, "page server: stopped") || strings.Contains(st, "running") {
		t.Errorf("status after stop:\n%s", st)
	}
	// Everything comes back.
	env.Zenith("start")
	pg := env.Postgres.CreateStart("main")
	if got := queryString(t, pg.Connect(), "SELECT 'ok'"); got != "ok" {
		t.Errorf("after restart: %q", got)
	}
}

// TestKill9Recovery kills every process of the environment with SIGKILL
// in the middle of a stream of commits; zenith start and zenith pg start
// main bring back every acknowledged commit.
func TestKill9Recovery(t *testing.T) {
	env := zenithtest.New(t, nil)
	pg := env.Postgres.CreateStart("main")
	conn := pg.Connect()
	exec1(t, conn, "CREATE TABLE acked (id int PRIMARY KEY, pad text)")
	done := make(chan int)
	go func() {
		acked := 0
		for i := 1; ; i++ {
			_, err := conn.Exec(context.Background(), "INSERT INTO acked VALUES ($1, repeat('p', 500))", i)
			if err != nil {
				break
			}
			acked = i
		}
		done <- acked
	}()
	time.Sleep(3 * time.Second)
	pids := env.Processes()
	for _, pid := range pids {
		_ = syscall.Kill(pid, syscall.SIGKILL)
	}
	acked := <-done
	if acked < 10 {
		t.Fatalf("only %d commits before the kill: the test proves little", acked)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(env.Processes()) > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}

	env.Zenith("start")
	pg = env.Postgres.CreateStart("main")
	conn = pg.Connect()
	var n, maxID int
	if err := conn.QueryRow(context.Background(), "SELECT count(*), coalesce(max(id), 0) FROM acked WHERE id <= $1", acked).Scan(&n, &maxID); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d commits acknowledged before kill -9; %d of them back", acked, n)
	if n != acked {
		t.Errorf("after kill -9 of everything: %d of %d acknowledged rows are back (max id %d)", n, acked, maxID)
	}
	// The recovered branch takes writes again.
	exec1(t, conn, "INSERT INTO acked VALUES (-1, 'after')")
}

// TestBadInput: each mistake gets a clear message, a non-zero exit, and
// leaves nothing behind.
func TestBadInput(t *testing.T) {
	env := zenithtest.New(t, nil)
	mustFail(t, env, "exists already", "init")
	mustFail(t, env, `unknown branch "nosuch"`, "pg", "create", "nosuch")
	mustFail(t, env, `unknown branch or timeline "nosuch"`, "branch", "x", "nosuch")
	mustFail(t, env, "hexadecimal", "pg", "create", "main", "--lsn", "0/1.5")
	mustFail(t, env, "after @ want an LSN", "branch", "x", "main@23810440")
	mustFail(t, env, "hexadecimal", "branch", "x", "main@12g/0")
	mustFail(t, env, "want two hexadecimal halves", "pg", "create", "main", "--lsn", "garbage")
	mustFail(t, env, "is after the end of branch main", "pg", "create", "main", "--lsn", "FF/0")
	mustFail(t, env, "is after the end of branch main", "branch", "x", "main@FF/0")
	mustFail(t, env, "no such compute node", "pg", "stop", "nosuch")
	mustFail(t, env, "invalid tenant id", "pg", "list", "--tenant", "xyz")

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	busy := strconv.Itoa(l.Addr().(*net.TCPAddr).Port)
	mustFail(t, env, "port "+busy+" is in use", "pg", "create", "main", "--port", busy)
	if list := env.Zenith("pg", "list"); strings.Count(list, "\n") != 1 {
		t.Errorf("failed creates left nodes behind:\n%s", list)
	}
	if b := env.Zenith("branch"); strings.Contains(b, "x") {
		t.Errorf("failed branch creations left a branch:\n%s", b)
	}

	// A second repository: init with a port in use, and with no
	// PostgreSQL, creates nothing.
	other := filepath.Join(env.Dir, "other")
	run := func(args ...string) (string, error) {
		cmd := exec.Command(env.Bin, args...)
		cmd.Env = append(os.Environ(), "ZENITH_REPO_DIR="+other)
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"init", "--pageserver-port", busy, "--http-port", "1"}, "port " + busy + " is in use"},
		{[]string{"init", "--pg-bin", "/nonexistent"}, "PostgreSQL 15 not found"},
	} {
		out, err := run(tc.args...)
		if err == nil || !strings.Contains(out, tc.want) {
			t.Errorf("zenith %s: %v, output %q; want a failure saying %q", strings.Join(tc.args, " "), err, out, tc.want)
		}
		if _, err := os.Stat(other); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("zenith %s failed but left %s", strings.Join(tc.args, " "), other)
		}
	}
}

// TestStalePidfile: a pidfile whose pid is now another process is
// reported and removed, that process is never signalled, and start works.
func TestStalePidfile(t *testing.T) {
	env := zenithtest.New(t, nil)
	env.Zenith("pageserver", "stop")
	sleeper := exec.Command("sleep", "600")
	if err := sleeper.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sleeper.Process.Kill(); _ = sleeper.Wait() })
	pidfile := filepath.Join(env.RepoDir, "pageserver.pid")
	write := func() {
		if err := os.WriteFile(pidfile, []byte(strconv.Itoa(sleeper.Process.Pid)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	write()
	_, errOut, err := env.Run("stop")
	if err != nil || !strings.Contains(errOut, "stale pidfile") {
		t.Errorf("zenith stop with a stale pidfile: %v, stderr %q; want success and a stale pidfile report", err, errOut)
	}
	write()
	if _, errOut, err = env.Run("start"); err != nil || !strings.Contains(errOut, "stale pidfile") || !strings.Contains(errOut, "page server started") {
		t.Errorf("zenith start with a stale pidfile: %v, stderr %q", err, errOut)
	}
	if !pgcluster.Alive(sleeper.Process.Pid) {
		t.Errorf("the process the stale pidfile named was signalled")
	}
	if got := queryString(t, env.Postgres.CreateStart("main").Connect(), "SELECT 'ok'"); got != "ok" {
		t.Errorf("after start: %q", got)
	}
}

// TestSafekeepers runs three safekeepers: a compute's commits wait for a
// majority of them, and a re-created compute (after a new election) has
// every committed row, also with one safekeeper stopped.
func TestSafekeepers(t *testing.T) {
	env := zenithtest.New(t, &zenithtest.Options{Safekeepers: 3})
	if st := env.Zenith("status"); strings.Count(st, "safekeeper") != 3 || strings.Contains(st, "stopped") {
		t.Fatalf("status with 3 safekeepers:\n%s", st)
	} else if strings.Count(st, "  memory: RSS ") != 4 || !strings.Contains(st, "in-memory layers ") {
		// Each running process reports its memory, the page server also
		// its in-memory layers and caches.
		t.Errorf("status with 3 safekeepers: want a memory line for each of the 4 processes:\n%s", st)
	}
	pg := env.Postgres.CreateStart("main")
	conn := pg.Connect()
	if got := queryString(t, conn, "SHOW synchronous_standby_names"); got != "ANY 2 (safekeeper1, safekeeper2, safekeeper3)" {
		t.Errorf("synchronous_standby_names = %q", got)
	}
	exec1(t, conn, "CREATE TABLE t (id int)")
	exec1(t, conn, "INSERT INTO t SELECT generate_series(1, 1000)")
	conn.Close(context.Background())
	pg.Destroy()

	env.Zenith("safekeeper", "stop", "--id", "3")
	pg = env.Postgres.CreateStart("main")
	conn = pg.Connect()
	if got := count(t, conn, "t"); got != 1000 {
		t.Errorf("after re-creating the compute: %d rows, want 1000", got)
	}
	exec1(t, conn, "INSERT INTO t SELECT generate_series(1001, 1100)")
	if got := count(t, conn, "t"); got != 1100 {
		t.Errorf("with 2 of 3 safekeepers: %d rows, want 1100", got)
	}
}
