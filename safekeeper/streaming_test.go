package safekeeper

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/repo/auth"
	"github.com/zenithdb/zenith/repo/pgcluster"
	"github.com/zenithdb/zenith/repo/pgcluster/pgtest"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/vfs"
)

// computeSettings make a test cluster wait for 2 of the 3 safekeepers.
var computeSettings = map[string]string{
	"synchronous_standby_names": "ANY 2 (safekeeper1, safekeeper2, safekeeper3)",
	"synchronous_commit":        "on",
	"wal_level":                 "replica",
	"max_wal_senders":           "10",
	"max_replication_slots":     "10",
}

// startCompute runs an election on a fresh timeline and attaches a new
// test cluster to the safekeepers as the compute of the elected term. It
// returns the cluster and the LSN the safekeepers' WAL starts at.
func startCompute(t *testing.T, ctx context.Context, ts *testSet) (*pgcluster.Cluster, pgdata.LSN) {
	t.Helper()
	pg := pgtest.Start(t, computeSettings)
	e, err := Elect(ctx, ts.addrs(), ts.tenant, ts.timeline, auth.ClientOptions{}, zerolog.New(zerolog.NewTestWriter(t)))
	if err != nil {
		t.Fatal(err)
	}
	if e.Term != 1 || e.StartLSN != 0 {
		t.Fatalf("first election on an empty timeline: term %d, start %s; want term 1, start 0/0", e.Term, e.StartLSN)
	}
	conn := connect(t, ctx, pg)
	var s string
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&s); err != nil {
		t.Fatal(err)
	}
	start, err := pgdata.ParseLSN(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.SetCompute(ctx, pg.ConnString("postgres"), start); err != nil {
		t.Fatal(err)
	}
	return pg, start
}

func connect(t *testing.T, ctx context.Context, pg *pgcluster.Cluster) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, pg.ConnString("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}

// commitWithin runs sql and reports whether it returned within d.
func commitWithin(t *testing.T, conn *pgx.Conn, sql string, d time.Duration) (bool, chan error) {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		_, err := conn.Exec(context.Background(), sql)
		done <- err
	}()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
		return true, done
	case <-time.After(d):
		return false, done
	}
}

func currentLSN(t *testing.T, ctx context.Context, conn *pgx.Conn) pgdata.LSN {
	t.Helper()
	var s string
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_flush_lsn()::text").Scan(&s); err != nil {
		t.Fatal(err)
	}
	lsn, err := pgdata.ParseLSN(s)
	if err != nil {
		t.Fatal(err)
	}
	return lsn
}

// TestQuorumStreamingSurvivesKillAndRestart: with three safekeepers and
// 'ANY 2', commits keep returning while one safekeeper is killed and
// restarted; it catches up, and all three hold exactly the compute's WAL.
func TestQuorumStreamingSurvivesKillAndRestart(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	ts := newTestSet(t, 3)
	for i := range ts.nodes {
		ts.start(i)
	}
	pg, start := startCompute(t, ctx, ts)
	conn := connect(t, ctx, pg)
	if _, err := conn.Exec(ctx, "CREATE TABLE t (n int, pad text)"); err != nil {
		t.Fatal(err)
	}

	var committed atomic.Int64
	stop := make(chan struct{})
	loopDone := make(chan error, 1)
	go func() {
		wconn, err := pgx.Connect(ctx, pg.ConnString("postgres"))
		if err != nil {
			loopDone <- err
			return
		}
		defer wconn.Close(context.Background())
		for i := 0; ; i++ {
			select {
			case <-stop:
				loopDone <- nil
				return
			default:
			}
			if _, err := wconn.Exec(ctx, "INSERT INTO t SELECT $1, repeat('x', 200)", i); err != nil {
				loopDone <- err
				return
			}
			committed.Add(1)
		}
	}()
	waitFor(t, 30*time.Second, "100 commits", func() bool { return committed.Load() >= 100 })
	ts.kill(1)
	before := committed.Load()
	waitFor(t, 30*time.Second, "commits with one safekeeper down", func() bool { return committed.Load() >= before+200 })
	ts.start(1)
	waitFor(t, 30*time.Second, "commits after the restart", func() bool { return committed.Load() >= before+400 })
	close(stop)
	if err := <-loopDone; err != nil {
		t.Fatalf("insert loop: %v", err)
	}
	end := currentLSN(t, ctx, conn)
	waitFor(t, 30*time.Second, "every safekeeper to reach the compute's flush LSN", func() bool {
		for i := range ts.nodes {
			if ts.tl(i).FlushLSN() < end {
				return false
			}
		}
		return true
	})
	var rows int64
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&rows); err != nil {
		t.Fatal(err)
	}
	if rows != committed.Load() {
		t.Fatalf("%d rows, %d commits acknowledged", rows, committed.Load())
	}
	want := readPGWAL(t, pg.DataDir(), start, end)
	for i := range ts.nodes {
		checkWAL(t, ts.nodes[i].dir, ts.tl(i), start, want)
	}
	t.Logf("%d commits; WAL [%s, %s) identical on the compute and all three safekeepers", rows, start, end)
}

// startWithTable starts three safekeepers and a compute streaming to
// them, and commits CREATE TABLE t (n int) there.
func startWithTable(t *testing.T, ctx context.Context) (*testSet, *pgcluster.Cluster, *pgx.Conn) {
	t.Helper()
	ts := newTestSet(t, 3)
	for i := range ts.nodes {
		ts.start(i)
	}
	pg, _ := startCompute(t, ctx, ts)
	conn := connect(t, ctx, pg)
	if ok, _ := commitWithin(t, conn, "CREATE TABLE t (n int)", 30*time.Second); !ok {
		t.Fatal("a commit with all safekeepers up did not return")
	}
	return ts, pg, conn
}

// TestCommitWaitsForQuorum: with two of three safekeepers stopped a commit
// does not return; when one comes back it does.
func TestCommitWaitsForQuorum(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ts, _, conn := startWithTable(t, ctx)
	ts.kill(1)
	ts.stop(2)
	ok, done := commitWithin(t, conn, "INSERT INTO t VALUES (1)", 3*time.Second)
	if ok {
		t.Fatal("a commit returned with two of three safekeepers down")
	}
	ts.start(2)
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the commit did not return 30 s after a second safekeeper came back")
	}
	var n int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&n); err != nil || n != 1 {
		t.Fatalf("count = %d, %v; want 1", n, err)
	}
}

// TestZombieComputeIsFenced: after a new election (a higher term), the old
// compute's next commit is never acknowledged.
func TestZombieComputeIsFenced(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ts, pg, conn := startWithTable(t, ctx)
	before := currentLSN(t, ctx, conn)
	waitFor(t, 10*time.Second, "the safekeepers to hold the table", func() bool {
		return ts.tl(0).FlushLSN() >= before && ts.tl(1).FlushLSN() >= before && ts.tl(2).FlushLSN() >= before
	})
	e, err := Elect(ctx, ts.addrs(), ts.tenant, ts.timeline, auth.ClientOptions{}, zerolog.New(zerolog.NewTestWriter(t)))
	if err != nil {
		t.Fatal(err)
	}
	if e.Term != 2 || e.StartLSN < before {
		t.Fatalf("second election: term %d start %s; want term 2, start >= %s", e.Term, e.StartLSN, before)
	}
	if ok, _ := commitWithin(t, conn, "INSERT INTO t VALUES (1)", 5*time.Second); ok {
		t.Fatal("the old compute got a commit acknowledged after a newer term was elected")
	}
	for i := range ts.nodes {
		if got := ts.tl(i).FlushLSN(); got != e.StartLSN {
			t.Errorf("safekeeper %d took WAL after the election: flush %s, term start %s", i+1, got, e.StartLSN)
		}
	}
	// Telling the safekeepers to stream from the old compute again, as
	// a confused control plane might, is refused.
	old := Election{Tenant: ts.tenant, Timeline: ts.timeline, Term: 1, StartLSN: e.StartLSN, Safekeepers: e.Safekeepers}
	if err := old.SetCompute(ctx, pg.ConnString("postgres"), e.StartLSN); !errors.Is(err, ErrNoQuorum) {
		t.Fatalf("a compute of the old term was accepted: %v", err)
	}
}

// TestStatusFollowsFsync: a safekeeper tells the compute of a flush only
// once its fsync has returned. With one of the three safekeepers stopped
// and the WAL fsyncs of another held, no commit returns and the compute
// sees the held safekeeper's flush below its own; once the fsyncs go on,
// the commits return. One client exercises the fsync on the receiving
// goroutine (nothing more arrives meanwhile); several committing at once,
// the flusher goroutine woken while more WAL is pending.
func TestStatusFollowsFsync(t *testing.T) {
	for _, clients := range []int{1, 8} {
		t.Run(fmt.Sprintf("clients=%d", clients), func(t *testing.T) {
			testStatusFollowsFsync(t, clients)
		})
	}
}

func testStatusFollowsFsync(t *testing.T, clients int) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	fs := vfs.NewFaulty(vfs.Default)
	ts := newTestSet(t, 3)
	ts.configure = func(cfg *Config) {
		if cfg.ID == 1 {
			cfg.FS = fs
		}
	}
	for i := range ts.nodes {
		ts.start(i)
	}
	pg, _ := startCompute(t, ctx, ts)
	conns := make([]*pgx.Conn, clients)
	for i := range conns {
		conns[i] = connect(t, ctx, pg)
	}
	if ok, _ := commitWithin(t, conns[0], "CREATE TABLE t (n int)", 30*time.Second); !ok {
		t.Fatal("a commit with all safekeepers up did not return")
	}
	ts.stop(2)
	gate := vfs.NewGate(vfs.OpSync, func(string) bool { return true })
	t.Cleanup(gate.Release) // before the safekeepers stop
	fs.SetRule(gate.Rule)

	done := make(chan error, clients)
	for i, conn := range conns {
		go func() {
			_, err := conn.Exec(context.Background(), fmt.Sprintf("INSERT INTO t VALUES (%d)", i))
			done <- err
		}()
	}
	select {
	case err := <-done:
		t.Fatalf("a commit returned (err=%v) while one of the two safekeepers up could not fsync", err)
	case <-time.After(3 * time.Second):
	}
	select {
	case <-gate.Held():
	case <-ctx.Done():
		t.Fatal("safekeeper 1 never fsynced the commits' WAL")
	}
	watch := connect(t, ctx, pg)
	held, err := pgtest.StandbyFlushBehind(ctx, watch, "safekeeper1")
	if err != nil {
		t.Fatal(err)
	}
	if !held {
		t.Error("the compute sees safekeeper 1 flushed up to its own flush LSN while its fsync is held")
	}
	gate.Release()
	for range clients {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(30 * time.Second):
			t.Fatal("a commit did not return 30 s after the fsyncs went on")
		}
	}
}
