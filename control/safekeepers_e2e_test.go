package control_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/pelletier/go-toml/v2"

	"github.com/zenithdb/zenith/control"
	"github.com/zenithdb/zenith/control/zenithtest"
	"github.com/zenithdb/zenith/repo/auth"
	"github.com/zenithdb/zenith/repo/pgcluster"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/safekeeper"
)

// skEnv is a zenithtest environment with safekeepers, with what a test
// needs to hurt them: their pidfiles, their HTTP status, the page server's.
type skEnv struct {
	*zenithtest.Env
	cfg control.Config
}

func newSKEnv(t *testing.T, safekeepers int) *skEnv {
	t.Helper()
	env := zenithtest.New(t, &zenithtest.Options{Safekeepers: safekeepers})
	b, err := os.ReadFile(filepath.Join(env.RepoDir, control.ConfigFileName))
	if err != nil {
		t.Fatal(err)
	}
	e := &skEnv{Env: env}
	if err := toml.Unmarshal(b, &e.cfg); err != nil {
		t.Fatalf("%s: %v", control.ConfigFileName, err)
	}
	return e
}

// skHTTP is safekeeper n's HTTP address.
func (e *skEnv) skHTTP(n int) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(e.cfg.Safekeepers.BaseHTTPPort+n-1))
}

// skPG is safekeeper n's WAL service address.
func (e *skEnv) skPG(n int) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(e.cfg.Safekeepers.BasePGPort+n-1))
}

// daemonPID reads a background process's pidfile in the repository and
// checks that the pid is that process of this environment (its command
// line names role and the environment's directory) before anyone
// signals it. It returns 0 if the process does not run.
func (e *skEnv) daemonPID(pidfile, role string) (int, error) {
	b, err := os.ReadFile(filepath.Join(e.RepoDir, pidfile))
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil || pid < 1 {
		return 0, fmt.Errorf("%s holds %q, not a pid", pidfile, b)
	}
	cmdline, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil || !bytes.Contains(cmdline, []byte(role)) || !bytes.Contains(cmdline, []byte(e.Dir+"/")) || isZombie(pid) {
		return 0, nil
	}
	return pid, nil
}

// kill9 sends SIGKILL to the process of pidfile and waits until it is
// gone; it reports whether one was running. It may run outside the
// test's goroutine.
func (e *skEnv) kill9(pidfile, role string) (bool, error) {
	pid, err := e.daemonPID(pidfile, role)
	if err != nil || pid == 0 {
		return false, err
	}
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		return false, fmt.Errorf("kill -9 %s (pid %d): %w", role, pid, err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for !isGone(pid) {
		if time.Now().After(deadline) {
			return false, fmt.Errorf("%s (pid %d) still runs 10 s after kill -9", role, pid)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return true, nil
}

// killSafekeeper is kill -9 of safekeeper n.
func (e *skEnv) killSafekeeper(n int) (bool, error) {
	return e.kill9(fmt.Sprintf("safekeeper-%d.pid", n), "safekeeper")
}

// killPageserver is kill -9 of the page server.
func (e *skEnv) killPageserver() (bool, error) {
	return e.kill9("pageserver.pid", "pageserver")
}

// mustKill fails the test unless kill (one of the above) killed a
// running process.
func mustKill(t *testing.T, what string, killed bool, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
	if !killed {
		t.Fatalf("%s was not running when the test was to kill it", what)
	}
}

func isGone(pid int) bool {
	return errors.Is(syscall.Kill(pid, 0), syscall.ESRCH) || isZombie(pid)
}

// isZombie says whether pid has exited and waits for its parent (a daemon
// that zenith start left is reaped by whoever adopted it, maybe never).
func isZombie(pid int) bool {
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return false
	}
	i := bytes.LastIndexByte(stat, ')')
	return i >= 0 && i+2 < len(stat) && stat[i+2] == 'Z'
}

// skTimeline is safekeeper n's state of the one timeline it holds.
func (e *skEnv) skTimeline(n int) (safekeeper.TimelineState, error) {
	client := http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + e.skHTTP(n) + "/v1/status")
	if err != nil {
		return safekeeper.TimelineState{}, err
	}
	defer resp.Body.Close()
	var st []safekeeper.TimelineState
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		return safekeeper.TimelineState{}, fmt.Errorf("safekeeper %d status: %w", n, err)
	}
	if len(st) != 1 {
		return safekeeper.TimelineState{}, fmt.Errorf("safekeeper %d holds %d timelines, want 1", n, len(st))
	}
	return st[0], nil
}

// waitCaughtUp waits until safekeeper n's flush LSN reaches the highest of
// the others'.
func (e *skEnv) waitCaughtUp(t *testing.T, n int, timeout time.Duration) pgdata.LSN {
	t.Helper()
	var target pgdata.LSN
	for i := 1; i <= e.cfg.Safekeepers.Count; i++ {
		if i == n {
			continue
		}
		st, err := e.skTimeline(i)
		if err != nil {
			t.Fatal(err)
		}
		target = max(target, st.FlushLSN)
	}
	deadline := time.Now().Add(timeout)
	for {
		st, err := e.skTimeline(n)
		if err == nil && st.FlushLSN >= target {
			return st.FlushLSN
		}
		if time.Now().After(deadline) {
			t.Fatalf("safekeeper %d did not catch up in %v: flush %s (err %v), the others reached %s", n, timeout, st.FlushLSN, err, target)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// pgbenchResult is what a pgbench run reported.
type pgbenchResult struct {
	Processed int     // "number of transactions actually processed"
	Failed    int     // "number of failed transactions" (-1: not printed)
	TPS       float64 // "tps = ... (without initial connection time)"
	Output    string
}

var (
	pgbenchProcessed = regexp.MustCompile(`number of transactions actually processed: (\d+)`)
	pgbenchFailed    = regexp.MustCompile(`number of failed transactions: (\d+)`)
	pgbenchTPS       = regexp.MustCompile(`tps = ([0-9.]+)`)
)

// pgbench runs PostgreSQL's pgbench against connStr; it fails the test if
// pgbench exits non-zero.
func pgbench(t *testing.T, connStr string, args ...string) pgbenchResult {
	t.Helper()
	bin, err := pgcluster.FindBinDir(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(filepath.Join(bin, "pgbench"), append(args, connStr)...)
	out, err := cmd.CombinedOutput()
	r := pgbenchResult{Failed: -1, Output: string(out)}
	if err != nil {
		t.Fatalf("pgbench %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	if m := pgbenchProcessed.FindSubmatch(out); m != nil {
		r.Processed, _ = strconv.Atoi(string(m[1]))
	}
	if m := pgbenchFailed.FindSubmatch(out); m != nil {
		r.Failed, _ = strconv.Atoi(string(m[1]))
	}
	if m := pgbenchTPS.FindSubmatch(out); m != nil {
		r.TPS, _ = strconv.ParseFloat(string(m[1]), 64)
	}
	return r
}

// envSeconds reads a duration in seconds from the environment variable
// name, or returns def.
func envSeconds(t *testing.T, name string, def int) int {
	t.Helper()
	s := os.Getenv(name)
	if s == "" {
		return def
	}
	n, err := strconv.Atoi(s)
	if err != nil || n < 3 {
		t.Fatalf("%s=%q: want a number of seconds, at least 3", name, s)
	}
	return n
}

// TestPgbenchSafekeeperKillRestart: three safekeepers under pgbench
// TPC-B; safekeeper 2 is killed with SIGKILL a third of the way through
// and restarted at two thirds. pgbench sees no error, the restarted
// safekeeper catches up, and a compute re-created from the page server
// has one pgbench_history row per transaction pgbench reported.
// PGBENCH_SECONDS (default 30) sets the run's length.
func TestPgbenchSafekeeperKillRestart(t *testing.T) {
	seconds := envSeconds(t, "PGBENCH_SECONDS", 30)
	env := newSKEnv(t, 3)
	pg := env.Postgres.CreateStart("main")
	pgbench(t, pg.ConnString, "-i", "-s", "1", "-q")

	faults := make(chan error, 1)
	go func() {
		faults <- func() error {
			time.Sleep(time.Duration(seconds) * time.Second / 3)
			if killed, err := env.killSafekeeper(2); err != nil || !killed {
				return fmt.Errorf("kill -9 safekeeper 2: killed %v, err %v", killed, err)
			}
			time.Sleep(time.Duration(seconds) * time.Second / 3)
			if _, errOut, err := env.Run("safekeeper", "start", "--id", "2"); err != nil {
				return fmt.Errorf("zenith safekeeper start --id 2: %v\n%s", err, errOut)
			}
			return nil
		}()
	}()
	r := pgbench(t, pg.ConnString, "-T", strconv.Itoa(seconds), "-c", "4", "-P", "5")
	if err := <-faults; err != nil {
		t.Fatal(err)
	}
	t.Logf("pgbench with safekeeper 2 killed at %d s and restarted at %d s:\n%s", seconds/3, 2*seconds/3, r.Output)
	if r.Processed == 0 {
		t.Fatalf("pgbench reported no processed transactions:\n%s", r.Output)
	}
	if r.Failed > 0 {
		t.Errorf("pgbench: %d failed transactions, want 0", r.Failed)
	}
	flush := env.waitCaughtUp(t, 2, time.Minute)
	t.Logf("restarted safekeeper 2 caught up to %s", flush)

	pg.Destroy()
	pg = env.Postgres.CreateStart("main")
	if got := count(t, pg.Connect(), "pgbench_history"); got != r.Processed {
		t.Errorf("re-created compute: pgbench_history has %d rows, pgbench reported %d transactions", got, r.Processed)
	}
}

// TestAllSafekeepersKill9: every safekeeper is killed with SIGKILL in
// the middle of a stream of commits and started again. Their segment
// files are preallocated, so each finds the end of its WAL by decoding
// (the flush LSN it reported may lie inside a record): the commit in
// flight completes, and a compute re-created from the page server after a
// new election has every acknowledged row.
func TestAllSafekeepersKill9(t *testing.T) {
	env := newSKEnv(t, 3)
	pg := env.Postgres.CreateStart("main")
	conn := pg.Connect()
	exec1(t, conn, "CREATE TABLE acked (id int PRIMARY KEY, pad text)")
	stop := make(chan struct{})
	done := make(chan int)
	go func() {
		acked := 0
		for i := 1; ; i++ {
			select {
			case <-stop:
				done <- acked
				return
			default:
			}
			// Rows of 3 kB: records cross WAL pages, so a kill
			// often leaves one cut short.
			if _, err := conn.Exec(context.Background(), "INSERT INTO acked VALUES ($1, repeat('p', 3000))", i); err != nil {
				t.Errorf("commit %d: %v", i, err)
				done <- acked
				return
			}
			acked = i
		}
	}()
	time.Sleep(3 * time.Second)
	for n := 1; n <= 3; n++ {
		killed, err := env.killSafekeeper(n)
		mustKill(t, fmt.Sprintf("safekeeper %d", n), killed, err)
	}
	time.Sleep(time.Second)
	for n := 1; n <= 3; n++ {
		if _, errOut, err := env.Run("safekeeper", "start", "--id", strconv.Itoa(n)); err != nil {
			t.Fatalf("zenith safekeeper start --id %d: %v\n%s", n, err, errOut)
		}
	}
	time.Sleep(2 * time.Second) // commits go on once a quorum streams again
	close(stop)
	var acked int
	select {
	case acked = <-done:
	case <-time.After(time.Minute):
		t.Fatal("the commit in flight when every safekeeper was killed did not complete after their restart")
	}
	if acked < 10 {
		t.Fatalf("only %d commits acknowledged: the test proves little", acked)
	}

	pg.Destroy()
	pg = env.Postgres.CreateStart("main")
	var n, maxID int
	if err := pg.Connect().QueryRow(context.Background(), "SELECT count(*) FILTER (WHERE id <= $1), coalesce(max(id), 0) FROM acked", acked).Scan(&n, &maxID); err != nil {
		t.Fatal(err)
	}
	t.Logf("%d commits acknowledged around a kill -9 of every safekeeper; %d of them back (max id %d)", acked, n, maxID)
	if n != acked {
		t.Errorf("after kill -9 of every safekeeper: %d of the %d acknowledged rows are back (max id %d)", n, acked, maxID)
	}
}

// TestTwoOfThreeDown: with two of three safekeepers killed a commit waits
// (for synchronous replication); one restarted, it completes, and a
// re-created compute has every row.
func TestTwoOfThreeDown(t *testing.T) {
	env := newSKEnv(t, 3)
	pg := env.Postgres.CreateStart("main")
	conn := pg.Connect()
	exec1(t, conn, "CREATE TABLE t (id int PRIMARY KEY)")
	exec1(t, conn, "INSERT INTO t SELECT generate_series(1, 100)")
	for _, n := range []int{2, 3} {
		killed, err := env.killSafekeeper(n)
		mustKill(t, fmt.Sprintf("safekeeper %d", n), killed, err)
	}

	waiting := pg.Connect()
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		_, err := waiting.Exec(ctx, "INSERT INTO t VALUES (101)")
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("a commit with 2 of 3 safekeepers down returned (err %v) instead of waiting", err)
	case <-time.After(5 * time.Second):
	}
	if got := queryString(t, conn, "SELECT string_agg(wait_event, ',') FROM pg_stat_activity WHERE query LIKE 'INSERT INTO t VALUES (101)%'"); got != "SyncRep" {
		t.Errorf("the waiting commit's wait_event is %q, want SyncRep", got)
	}

	env.Zenith("safekeeper", "start", "--id", "3")
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("the waiting commit after a safekeeper came back: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("the waiting commit did not complete within a minute of a majority being back")
	}
	exec1(t, conn, "INSERT INTO t VALUES (102)")

	// A new compute, elected by safekeepers 1 and 3, has everything.
	waiting.Close(context.Background())
	conn.Close(context.Background())
	pg.Destroy()
	pg = env.Postgres.CreateStart("main")
	if got := queryString(t, pg.Connect(), "SELECT count(*) || ' ' || max(id) FROM t"); got != "102 102" {
		t.Errorf("re-created compute: count and max of t = %q, want 102 102", got)
	}
}

// TestZombieCompute: a second control plane (another repository pointing
// at the same page server and safekeepers, as after a control-plane
// failover) starts a compute on main while the first compute still runs.
// After its election the first compute's commits wait forever, and a
// compute created afresh has exactly the acknowledged commits.
func TestZombieCompute(t *testing.T) {
	env := newSKEnv(t, 3)
	pg := env.Postgres.CreateStart("main")
	zombie := pg.Connect()
	exec1(t, zombie, "CREATE TABLE t (id int PRIMARY KEY, who text)")
	for i := 1; i <= 50; i++ {
		exec1(t, zombie, "INSERT INTO t VALUES ($1, 'first')", i)
	}

	other := newOtherControlPlane(t, env)
	connStr := lastLine(other.zenith(t, "pg", "start", "main", "--name", "second"))
	t.Cleanup(func() { other.run("pg", "stop", "second", "--immediate") })

	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		_, err := zombie.Exec(ctx, "INSERT INTO t VALUES (1000, 'zombie')")
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("the zombie compute's commit returned (err %v) after another compute's election", err)
	case <-time.After(10 * time.Second):
	}

	ctx, cancel := context.WithTimeout(context.Background(), sqlTimeout)
	defer cancel()
	second, err := pgx.Connect(ctx, connStr+"?sslmode=disable")
	if err != nil {
		t.Fatal(err)
	}
	defer second.Close(context.Background())
	if got := count(t, second, "t"); got != 50 {
		t.Errorf("the second compute sees %d rows, want the 50 acknowledged ones", got)
	}
	exec1(t, second, "INSERT INTO t VALUES (2000, 'second')")
	second.Close(context.Background())

	env.Zenith("pg", "stop", "main", "--destroy", "--immediate")
	other.zenith(t, "pg", "stop", "second", "--destroy")
	fresh := env.Postgres.CreateStart("main").Connect()
	if got := count(t, fresh, "t WHERE id <= 50 AND who = 'first'"); got != 50 {
		t.Errorf("a compute created afresh has %d of the 50 rows the first compute had acknowledged", got)
	}
	if got := queryString(t, fresh, "SELECT coalesce(string_agg(id || ' ' || who, ', ' ORDER BY id), '') FROM t WHERE id > 50"); got != "2000 second" {
		t.Errorf("a compute created afresh has, past the first 50 rows, %q; want the second compute's acknowledged row only: \"2000 second\"", got)
	}
}

// otherControlPlane is a second repository directory that uses the
// environment's page server and safekeepers without running them.
type otherControlPlane struct {
	env *skEnv
	dir string
}

func newOtherControlPlane(t *testing.T, env *skEnv) *otherControlPlane {
	t.Helper()
	o := &otherControlPlane{env: env, dir: filepath.Join(env.Dir, "other")}
	cfg := env.cfg
	cfg.Pageserver.Local = false
	b, err := toml.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(o.dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(o.dir, control.ConfigFileName), b, 0o644); err != nil {
		t.Fatal(err)
	}
	// With auth and TLS (ZENITH_TEST_SECURE), a failed-over control
	// plane holds the same keys and CA: the operator copies them.
	for _, f := range []string{auth.PrivateKeyFile, auth.PublicKeyFile, filepath.Join("tls", auth.CACertFile)} {
		b, err := os.ReadFile(filepath.Join(env.RepoDir, f))
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		if err != nil {
			t.Fatal(err)
		}
		if err := os.MkdirAll(filepath.Dir(filepath.Join(o.dir, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(o.dir, f), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
	return o
}

func (o *otherControlPlane) run(args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, o.env.Bin, args...)
	cmd.Env = append(os.Environ(), control.RepoDirEnv+"="+o.dir)
	cmd.Dir = o.env.Dir
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("zenith %s (repository %s): %w\n%s", strings.Join(args, " "), o.dir, err, stderr.String())
	}
	return string(out), nil
}

func (o *otherControlPlane) zenith(t *testing.T, args ...string) string {
	t.Helper()
	out, err := o.run(args...)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimSpace(s), "\n")
	return lines[len(lines)-1]
}
