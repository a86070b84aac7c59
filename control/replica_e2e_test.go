package control_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/zenithdb/zenith/control/zenithtest"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// replicaTimeout bounds how long a replica may take to replay what its
// primary committed (a loaded machine is slow, never this slow).
const replicaTimeout = 2 * time.Minute

// contents is what a test compares between a primary and its replica:
// every row of table t, in order, and the tables there are.
func contents(t *testing.T, conn *pgx.Conn) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), sqlTimeout)
	defer cancel()
	var s string
	err := conn.QueryRow(ctx, `SELECT coalesce((SELECT string_agg(tablename, ',' ORDER BY tablename) FROM pg_tables WHERE schemaname = 'public'), '')
		|| ' ' || coalesce((SELECT md5(string_agg(t::text, ',' ORDER BY id)) FROM t), '')
		|| ' ' || (SELECT count(*) FROM t)`).Scan(&s)
	if err != nil {
		t.Fatalf("read contents: %v", err)
	}
	return s
}

// waitEqual waits until the replica's contents are the primary's.
func waitEqual(t *testing.T, what string, primary, replica *pgx.Conn) {
	t.Helper()
	want := contents(t, primary)
	var got string
	for deadline := time.Now().Add(replicaTimeout); ; time.Sleep(200 * time.Millisecond) {
		if got = contents(t, replica); got == want {
			t.Logf("%s: replica has %s", what, got)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: the replica has %q after %v, the primary %q", what, got, replicaTimeout, want)
		}
	}
}

// pgListRow is a row of zenith pg list --json.
type pgListRow struct {
	Name           string  `json:"name"`
	Role           string  `json:"role"`
	LSN            string  `json:"lsn"`
	Status         string  `json:"status"`
	Mode           string  `json:"mode"`
	ReplayLagBytes *uint64 `json:"replay_lag_bytes"`
}

func (e *skEnv) pgList(t *testing.T) map[string]pgListRow {
	t.Helper()
	var rows []pgListRow
	if err := json.Unmarshal([]byte(e.Zenith("pg", "list", "--json")), &rows); err != nil {
		t.Fatal(err)
	}
	m := map[string]pgListRow{}
	for _, r := range rows {
		m[r.Name] = r
	}
	return m
}

// TestReplicaFollowsPrimaryAcrossRecreation: a replica of main, started
// while its primary runs, is read-only, replays what the primary commits,
// and keeps doing so while the primary is restarted, and then destroyed
// and made anew, and stopped at once in the middle of writes (each a new
// term of the safekeepers); each time its data becomes the primary's. pg list shows it as a replica with its lag.
func TestReplicaFollowsPrimaryAcrossRecreation(t *testing.T) {
	env := newSKEnv(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	connect := func(connStr string) *pgx.Conn { return connectCleanup(t, ctx, connStr) }
	// Settings a hot standby needs at least as high as its primary's.
	primary := connect(lastLine(env.Zenith("pg", "start", "main", "-c", "max_connections=150", "-c", "max_locks_per_transaction=128")))
	exec1(t, primary, "CREATE TABLE t (id int PRIMARY KEY, v text)")
	exec1(t, primary, "INSERT INTO t SELECT g, 'before the replica ' || g FROM generate_series(1, 1000) g")

	replicaURL := lastLine(env.Zenith("pg", "start", "main", "--replica"))
	replica := connect(replicaURL)
	waitEqual(t, "replica started while the primary runs", primary, replica)
	if got := queryString(t, replica, "SELECT pg_is_in_recovery()::text"); got != "true" {
		t.Errorf("pg_is_in_recovery() on the replica = %s, want true", got)
	}
	if got := queryString(t, replica, "SELECT current_setting('max_connections') || ' ' || current_setting('max_locks_per_transaction')"); got != "150 128" {
		t.Errorf("the replica's max_connections and max_locks_per_transaction are %s, want the primary's 150 128", got)
	}
	if _, err := replica.Exec(ctx, "INSERT INTO t VALUES (0, 'written on the replica')"); err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Errorf("INSERT on the replica: %v, want a read-only error", err)
	}

	exec1(t, primary, "INSERT INTO t SELECT g, 'while the replica runs ' || g FROM generate_series(1001, 3000) g")
	exec1(t, primary, "UPDATE t SET v = v || ' updated' WHERE id % 7 = 0")
	exec1(t, primary, "CREATE TABLE t2 AS SELECT g FROM generate_series(1, 500) g")
	waitEqual(t, "writes of the primary", primary, replica)

	rows := env.pgList(t)
	if r := rows["main-replica"]; r.Role != "replica" || r.Status != "running" || r.ReplayLagBytes == nil {
		t.Errorf("pg list: replica main-replica is %+v, want role replica, running, with a lag", r)
	}
	if r := rows["main"]; r.Role != "primary" || r.ReplayLagBytes != nil {
		t.Errorf("pg list: main is %+v, want role primary and no lag", r)
	}
	waitFor(t, "the replica's lag to be 0 in pg list", replicaTimeout, func() bool {
		r := env.pgList(t)["main-replica"]
		return r.ReplayLagBytes != nil && *r.ReplayLagBytes == 0
	})
	out := env.Zenith("pg", "list")
	if !strings.Contains(out, "ROLE") || !strings.Contains(out, "LAG") || !strings.Contains(out, "replica") {
		t.Errorf("pg list shows no ROLE and LAG of the replica:\n%s", out)
	}
	t.Logf("zenith pg list:\n%s", out)

	// A restart of the primary: a new term, same node.
	primary.Close(ctx)
	env.Zenith("pg", "stop", "main")
	primary = connect(lastLine(env.Zenith("pg", "start", "main")))
	exec1(t, primary, "INSERT INTO t SELECT g, 'after the restart ' || g FROM generate_series(3001, 4000) g")
	waitEqual(t, "after the primary's restart", primary, replica)

	// The primary destroyed and made anew while the replica runs.
	primary.Close(ctx)
	env.Zenith("pg", "stop", "main", "--destroy")
	exec1(t, replica, "SELECT 1")
	primary = connect(lastLine(env.Zenith("pg", "start", "main")))
	exec1(t, primary, "INSERT INTO t SELECT g, 'after the re-creation ' || g FROM generate_series(4001, 6000) g")
	exec1(t, primary, "DELETE FROM t WHERE id % 11 = 0")
	exec1(t, primary, "DROP TABLE t2")
	waitEqual(t, "after the primary's re-creation", primary, replica)

	// An immediate stop in the middle of writes: the WAL the safekeepers
	// committed may end inside a record that the next election drops.
	stopMidWrites(t, ctx, env, primary, 6001)
	primaryURL := lastLine(env.Zenith("pg", "start", "main"))
	primary = connect(primaryURL)
	exec1(t, primary, "INSERT INTO t SELECT g, 'after the immediate stop ' || g FROM generate_series(1000001, 1001000) g")
	exec1(t, primary, "CREATE INDEX ON t (v)")
	exec1(t, primary, "CREATE TABLE t3 (a int, b jsonb)")
	exec1(t, primary, "INSERT INTO t3 SELECT g, jsonb_build_object('g', g) FROM generate_series(1, 100) g")
	waitEqual(t, "after the primary's immediate stop", primary, replica)
	// Everything, not just t: the dumps are equal once the replica has
	// replayed the last commit, which it has when t3's rows are there.
	waitFor(t, "the replica to have t3's rows", replicaTimeout, func() bool {
		var n int
		return replica.QueryRow(ctx, "SELECT count(*) FROM t3").Scan(&n) == nil && n == 100
	})
	if p, r := pgDump(t, &zenithtest.Postgres{ConnString: primaryURL}), pgDump(t, &zenithtest.Postgres{ConnString: replicaURL}); p != r {
		t.Errorf("pg_dump of the replica differs from the primary's (%d and %d bytes)", len(r), len(p))
	}
	logReplica(t, env, "main-replica")

	replica.Close(ctx)
	env.Zenith("pg", "stop", "main-replica", "--destroy")
	if _, ok := env.pgList(t)["main-replica"]; ok {
		t.Error("pg list still shows main-replica after pg stop --destroy")
	}
}

// stopMidWrites stops primary main with pg stop --immediate while primary
// (a connection to it) inserts rows into t from id first on, and closes
// the connection.
func stopMidWrites(t *testing.T, ctx context.Context, env *skEnv, primary *pgx.Conn, first int) {
	t.Helper()
	stopped := make(chan struct{})
	writes := make(chan error, 1)
	go func() {
		for i := first; ; i++ {
			select {
			case <-stopped:
				writes <- nil
				return
			default:
			}
			if _, err := primary.Exec(ctx, "INSERT INTO t SELECT g, repeat('w', 2000) FROM generate_series($1::int, $1::int + 9) g", i*10); err != nil {
				writes <- err
				return
			}
		}
	}()
	time.Sleep(2 * time.Second)
	env.Zenith("pg", "stop", "main", "--immediate")
	close(stopped)
	if err := <-writes; err == nil {
		t.Fatal("the writes went on after the primary's immediate stop")
	}
	primary.Close(ctx)
}

// logReplica logs the server log of replica name when the test failed.
func logReplica(t *testing.T, env *skEnv, name string) {
	t.Helper()
	if !t.Failed() && !testing.Verbose() {
		return
	}
	logs, _ := filepath.Glob(filepath.Join(env.RepoDir, "pgdatadirs", "tenants", "*", name, "postgres.log"))
	for _, l := range logs {
		if b, err := os.ReadFile(l); err == nil {
			t.Logf("%s:\n%s", l, b)
		}
	}
}

// TestReplicaWaitsForPrimary: a replica of a new branch that has no
// primary yet (its upstream holds none of its WAL, and will hold it
// from the middle of a segment) starts at the branch's end and follows
// the primary started after it. A restart of the replica itself builds
// it anew at a checkpoint of the running primary. With safekeepers, when
// the one it streams from is killed, it streams from another. This
// replica is eager (a full copy); the other tests' are lazy where FUSE
// works. It runs with three safekeepers and without any (the replica
// then streams from the page server).
func TestReplicaWaitsForPrimary(t *testing.T) {
	for _, safekeepers := range []int{3, 0} {
		t.Run(fmt.Sprintf("safekeepers=%d", safekeepers), func(t *testing.T) { testReplicaWaitsForPrimary(t, safekeepers) })
	}
}

func testReplicaWaitsForPrimary(t *testing.T, safekeepers int) {
	env := newSKEnv(t, safekeepers)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	connect := func(connStr string) *pgx.Conn { return connectCleanup(t, ctx, connStr) }
	main := connect(lastLine(env.Zenith("pg", "start", "main")))
	exec1(t, main, "CREATE TABLE t (id int PRIMARY KEY, v text)")
	exec1(t, main, "INSERT INTO t SELECT g, 'on main ' || g FROM generate_series(1, 500) g")
	main.Close(ctx)
	env.Zenith("pg", "stop", "main")
	env.Zenith("branch", "b", "main")

	env.Zenith("pg", "create", "b", "--replica", "--name", "b-ro", "--eager")
	replica := connect(lastLine(env.Zenith("pg", "start", "b-ro", "--eager")))
	if got := count(t, replica, "t"); got != 500 {
		t.Fatalf("the replica of b has %d rows before b has a primary, want 500", got)
	}
	primary := connect(lastLine(env.Zenith("pg", "start", "b")))
	exec1(t, primary, "INSERT INTO t SELECT g, 'on b ' || g FROM generate_series(501, 2000) g")
	waitEqual(t, "primary started after the replica", primary, replica)
	logReplica(t, env, "b-ro")

	replica.Close(ctx)
	env.Zenith("pg", "stop", "b-ro")
	if r := env.pgList(t)["b-ro"]; r.Status != "stopped" || r.Role != "replica" || r.Mode != "eager" {
		t.Errorf("pg list after pg stop b-ro: %+v, want a stopped eager replica", r)
	}
	exec1(t, primary, "INSERT INTO t SELECT g, 'while the replica is down ' || g FROM generate_series(2001, 3000) g")
	replica = connect(lastLine(env.Zenith("pg", "start", "b-ro", "--eager")))
	exec1(t, primary, "UPDATE t SET v = 'after the replica restarted' WHERE id <= 100")
	waitEqual(t, "replica restarted", primary, replica)

	if safekeepers == 0 {
		return
	}
	// The safekeeper it streams from (libpq tries the first one first)
	// dies: it goes on with another.
	killed, err := env.killSafekeeper(1)
	mustKill(t, "safekeeper 1", killed, err)
	exec1(t, primary, "INSERT INTO t SELECT g, 'safekeeper 1 is down ' || g FROM generate_series(3001, 4000) g")
	waitEqual(t, "safekeeper 1 killed", primary, replica)
}

// TestReplicaWithoutSafekeepers: in a repository without safekeepers a
// replica streams the branch's WAL from the page server's WAL store. It
// is read-only and replays what the primary commits (pg_dump equal once
// it caught up, lag 0 in pg list); it keeps following while the primary
// is destroyed and made anew (its WAL continues the store's), while the
// page server is restarted (the replica reconnects and catches up), and
// across an immediate stop of the primary in the middle of writes.
func TestReplicaWithoutSafekeepers(t *testing.T) {
	env := newSKEnv(t, 0)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	connect := func(connStr string) *pgx.Conn { return connectCleanup(t, ctx, connStr) }
	primaryURL := lastLine(env.Zenith("pg", "start", "main"))
	primary := connect(primaryURL)
	exec1(t, primary, "CREATE TABLE t (id int PRIMARY KEY, v text)")
	exec1(t, primary, "INSERT INTO t SELECT g, 'before the replica ' || g FROM generate_series(1, 1000) g")

	replicaURL := lastLine(env.Zenith("pg", "start", "main", "--replica"))
	replica := connect(replicaURL)
	defer logReplica(t, env, "main-replica")
	waitEqual(t, "replica started while the primary runs", primary, replica)
	if got := queryString(t, replica, "SELECT pg_is_in_recovery()::text"); got != "true" {
		t.Errorf("pg_is_in_recovery() on the replica = %s, want true", got)
	}
	if _, err := replica.Exec(ctx, "INSERT INTO t VALUES (0, 'written on the replica')"); err == nil || !strings.Contains(err.Error(), "read-only") {
		t.Errorf("INSERT on the replica: %v, want a read-only error", err)
	}
	_, psPort, _ := net.SplitHostPort(env.PageserverAddr)
	if got := queryString(t, replica, "SELECT conninfo FROM pg_stat_wal_receiver"); !strings.Contains(got, "port="+psPort) {
		t.Errorf("the replica's walreceiver connects with %q, want the page server's port %s", got, psPort)
	}

	exec1(t, primary, "INSERT INTO t SELECT g, 'while the replica runs ' || g FROM generate_series(1001, 3000) g")
	exec1(t, primary, "UPDATE t SET v = v || ' updated' WHERE id % 7 = 0")
	exec1(t, primary, "CREATE TABLE t2 AS SELECT g FROM generate_series(1, 500) g")
	waitEqual(t, "writes of the primary", primary, replica)
	waitFor(t, "the replica's lag to be 0 in pg list", replicaTimeout, func() bool {
		r := env.pgList(t)["main-replica"]
		return r.Role == "replica" && r.Status == "running" && r.ReplayLagBytes != nil && *r.ReplayLagBytes == 0
	})
	checkDumpsEqual(t, ctx, "after the primary's writes", primaryURL, replicaURL, replica, 1)

	// The primary destroyed and made anew while the replica runs.
	primary.Close(ctx)
	env.Zenith("pg", "stop", "main", "--destroy")
	exec1(t, replica, "SELECT 1")
	primaryURL = lastLine(env.Zenith("pg", "start", "main"))
	primary = connect(primaryURL)
	exec1(t, primary, "INSERT INTO t SELECT g, 'after the re-creation ' || g FROM generate_series(3001, 5000) g")
	exec1(t, primary, "DELETE FROM t WHERE id % 11 = 0")
	exec1(t, primary, "DROP TABLE t2")
	waitEqual(t, "after the primary's re-creation", primary, replica)
	checkDumpsEqual(t, ctx, "after the primary's re-creation", primaryURL, replicaURL, replica, 2)

	// The page server restarted while the replica runs: the primary's
	// commits wait for it, the replica's walreceiver connects again.
	env.Zenith("pageserver", "stop")
	exec1(t, replica, "SELECT count(*) FROM t")
	env.Zenith("pageserver", "start")
	exec1(t, primary, "INSERT INTO t SELECT g, 'after the page server restart ' || g FROM generate_series(5001, 6000) g")
	exec1(t, primary, "CREATE INDEX ON t (v)")
	waitEqual(t, "after the page server's restart", primary, replica)
	checkDumpsEqual(t, ctx, "after the page server's restart", primaryURL, replicaURL, replica, 3)

	// An immediate stop in the middle of writes: the page server may hold
	// the start of a record whose end never came, which it never sent and
	// cuts off before the next primary's WAL.
	stopMidWrites(t, ctx, env, primary, 7001)
	primaryURL = lastLine(env.Zenith("pg", "start", "main"))
	primary = connect(primaryURL)
	exec1(t, primary, "INSERT INTO t SELECT g, 'after the immediate stop ' || g FROM generate_series(1000001, 1001000) g")
	waitEqual(t, "after the primary's immediate stop", primary, replica)
	checkDumpsEqual(t, ctx, "after the primary's immediate stop", primaryURL, replicaURL, replica, 4)
}

// checkDumpsEqual marks the primary's WAL with a row of table marks,
// waits for the replica to have it (it has replayed every commit before)
// and compares their pg_dump.
func checkDumpsEqual(t *testing.T, ctx context.Context, what, primaryURL, replicaURL string, replica *pgx.Conn, mark int) {
	t.Helper()
	p, err := pgx.Connect(ctx, primaryURL)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(context.Background())
	exec1(t, p, "CREATE TABLE IF NOT EXISTS marks (n int)")
	exec1(t, p, "INSERT INTO marks VALUES ($1)", mark)
	waitFor(t, fmt.Sprintf("%s: the replica to have mark %d", what, mark), replicaTimeout, func() bool {
		var n int
		return replica.QueryRow(ctx, "SELECT count(*) FROM marks WHERE n = $1", mark).Scan(&n) == nil && n == 1
	})
	if pd, rd := pgDump(t, &zenithtest.Postgres{ConnString: primaryURL}), pgDump(t, &zenithtest.Postgres{ConnString: replicaURL}); pd != rd {
		t.Errorf("%s: pg_dump of the replica differs from the primary's (%d and %d bytes)", what, len(rd), len(pd))
	} else {
		t.Logf("%s: pg_dump of the replica equals the primary's (%d bytes)", what, len(pd))
	}
}

// TestReplicaOptionsRefused: pg create --replica --lsn, pg start
// --replica of a node that is not one, and --replica --ephemeral are
// refused with a message naming what is wrong, and leave no node.
func TestReplicaOptionsRefused(t *testing.T) {
	env := zenithtest.New(t, nil)
	_, errOut, err := env.Run("pg", "create", "main", "--replica", "--lsn", "0/1000000", "--name", "ro")
	if err == nil || !strings.Contains(errOut, "--lsn") {
		t.Errorf("pg create --replica --lsn: %v\n%s\nwant an error naming --lsn", err, errOut)
	}
	if out := env.Zenith("pg", "list"); strings.Contains(out, "\nro ") {
		t.Errorf("pg list after the refused replica:\n%s", out)
	}
	// A node of that name that is not a replica is not started as one.
	env.Zenith("pg", "create", "main", "--name", "primary")
	_, errOut, err = env.Run("pg", "start", "main", "--replica", "--name", "primary")
	if err == nil || !strings.Contains(errOut, "not a replica") {
		t.Errorf("pg start --replica --name of a primary node: %v\n%s\nwant an error saying it is not a replica", err, errOut)
	}
	_, errOut, err = env.Run("pg", "start", "main", "--replica", "--ephemeral")
	if err == nil || !strings.Contains(errOut, "--ephemeral") {
		t.Errorf("pg start --replica --ephemeral: %v\n%s\nwant an error naming --ephemeral", err, errOut)
	}
}

// TestReplicaWithAuthAndTLS: with --auth --tls the safekeepers, or
// without them the page server, take only tokens over TLS; a replica's
// walreceiver presents a token of its tenant and checks their
// certificates, and follows its primary.
func TestReplicaWithAuthAndTLS(t *testing.T) {
	for _, safekeepers := range []int{3, 0} {
		t.Run(fmt.Sprintf("safekeepers=%d", safekeepers), func(t *testing.T) {
			env := zenithtest.New(t, &zenithtest.Options{Safekeepers: safekeepers, Secure: true})
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			connect := func(connStr string) *pgx.Conn { return connectCleanup(t, ctx, connStr) }
			primary := connect(lastLine(env.Zenith("pg", "start", "main")))
			exec1(t, primary, "CREATE TABLE t (id int PRIMARY KEY, v text)")
			replica := connect(lastLine(env.Zenith("pg", "start", "main", "--replica")))
			exec1(t, primary, "INSERT INTO t SELECT g, 'secure ' || g FROM generate_series(1, 1000) g")
			waitEqual(t, "replica with auth and TLS", primary, replica)
			conninfo := queryString(t, replica, "SELECT conninfo FROM pg_stat_wal_receiver")
			if !strings.Contains(conninfo, "sslmode=verify-full") || !strings.Contains(conninfo, "password=") {
				t.Errorf("the replica's walreceiver connects with %q, want sslmode=verify-full and a password (the token)", conninfo)
			}
		})
	}
}

// TestReplicaCreatedBeforeWALRemoved: a replica made with pg create and
// started only after the safekeepers removed the WAL from its start (they
// keep what the page server does not hold durably yet) is built anew at
// its start instead of waiting for WAL that is gone.
func TestReplicaCreatedBeforeWALRemoved(t *testing.T) {
	env := newSKEnv(t, 3)
	if env.Secure {
		t.Skip("skTimeline reads the safekeepers' HTTP status without TLS and token")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	connect := func(connStr string) *pgx.Conn { return connectCleanup(t, ctx, connStr) }
	primary := connect(lastLine(env.Zenith("pg", "start", "main")))
	exec1(t, primary, "CREATE TABLE t (id int PRIMARY KEY, v text)")
	env.Zenith("pg", "create", "main", "--replica", "--eager")
	built := pgdata.LSN(0)
	for i := 1; i <= 2; i++ {
		exec1(t, primary, fmt.Sprintf("CREATE TABLE big%d AS SELECT g, repeat('x', 500) AS pad FROM generate_series(1, 60000) g", i))
	}
	exec1(t, primary, "INSERT INTO t SELECT g, 'after the replica was made ' || g FROM generate_series(1, 1000) g")
	var rows []struct {
		Name string `json:"name"`
		LSN  string `json:"lsn"`
	}
	if err := json.Unmarshal([]byte(env.Zenith("pg", "list", "--json")), &rows); err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if r.Name == "main-replica" {
			built, _ = pgdata.ParseLSN(r.LSN)
		}
	}
	waitFor(t, "the safekeepers to remove the WAL from the replica's start", 3*time.Minute, func() bool {
		for n := 1; n <= 3; n++ {
			if st, err := env.skTimeline(n); err != nil || st.BeginLSN <= built {
				return false
			}
		}
		return true
	})
	replica := connect(lastLine(env.Zenith("pg", "start", "main-replica", "--eager")))
	exec1(t, primary, "UPDATE t SET v = 'after the replica started' WHERE id % 2 = 0")
	waitEqual(t, "replica started after its WAL was removed", primary, replica)
	logReplica(t, env, "main-replica")
}
