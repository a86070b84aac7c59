package pageserver

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/pageserver/api"
	"github.com/zenithdb/zenith/pageserver/httpapi"
	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/auth"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/pgcluster"
	"github.com/zenithdb/zenith/repo/pgcluster/workload"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/safekeeper"
)

// testSafekeepers are safekeepers running in this process, each on its
// own loopback ports (kept across restarts) and data directory, stopped
// when the test ends.
type testSafekeepers struct {
	t     *testing.T
	nodes []*testSafekeeper
}

type testSafekeeper struct {
	cfg              safekeeper.Config
	pgAddr, httpAddr string
	sk               *safekeeper.Safekeeper
	cancel           context.CancelFunc
	done             chan error
}

// startSafekeepers runs n safekeepers that are each other's peers.
func startSafekeepers(t *testing.T, n int) *testSafekeepers {
	t.Helper()
	s := &testSafekeepers{t: t}
	base := t.TempDir()
	for i := range n {
		s.nodes = append(s.nodes, &testSafekeeper{
			cfg:    safekeeper.Config{ID: uint64(i + 1), Dir: filepath.Join(base, fmt.Sprint("sk", i+1)), PollInterval: 50 * time.Millisecond},
			pgAddr: freeAddr(t), httpAddr: freeAddr(t),
		})
	}
	for _, nd := range s.nodes {
		for _, p := range s.nodes {
			if p != nd {
				nd.cfg.Peers = append(nd.cfg.Peers, p.httpAddr)
			}
		}
	}
	t.Cleanup(func() {
		for i, nd := range s.nodes {
			if nd.sk != nil {
				s.stop(i)
			}
		}
	})
	for i := range s.nodes {
		s.start(i)
	}
	return s
}

// start opens and runs safekeeper i on its directory and ports.
func (s *testSafekeepers) start(i int) {
	s.t.Helper()
	nd := s.nodes[i]
	sk, err := safekeeper.Open(nd.cfg, zerolog.New(zerolog.NewTestWriter(s.t)).Level(zerolog.WarnLevel))
	if err != nil {
		s.t.Fatal(err)
	}
	var pg, hl net.Listener
	// The port of a safekeeper just stopped may take a moment to free.
	for try := 0; try < 50; try++ {
		if pg, err = net.Listen("tcp", nd.pgAddr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err == nil {
		if hl, err = net.Listen("tcp", nd.httpAddr); err != nil {
			pg.Close()
		}
	}
	if err != nil {
		sk.Close()
		s.t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	nd.sk, nd.cancel, nd.done = sk, cancel, make(chan error, 1)
	go func() { nd.done <- sk.Run(ctx, pg, hl) }()
}

// stop stops safekeeper i: its connections end, the page server's
// included.
func (s *testSafekeepers) stop(i int) {
	s.t.Helper()
	nd := s.nodes[i]
	nd.cancel()
	if err := <-nd.done; err != nil {
		s.t.Errorf("safekeeper %d: Run: %v", nd.cfg.ID, err)
	}
	if err := nd.sk.Close(); err != nil {
		s.t.Errorf("safekeeper %d: Close: %v", nd.cfg.ID, err)
	}
	nd.sk = nil
}

func (s *testSafekeepers) addrs() []string {
	var out []string
	for _, nd := range s.nodes {
		out = append(out, nd.pgAddr)
	}
	return out
}

// index returns the index of the safekeeper at the libpq address addr.
func (s *testSafekeepers) index(addr string) int {
	s.t.Helper()
	for i, nd := range s.nodes {
		if nd.pgAddr == addr {
			return i
		}
	}
	s.t.Fatalf("%q is none of the safekeepers %v", addr, s.addrs())
	return -1
}

// state returns safekeeper i's state of a timeline.
func (s *testSafekeepers) state(i int, tenant id.TenantID, timeline id.TimelineID) safekeeper.TimelineState {
	s.t.Helper()
	tl, err := s.nodes[i].sk.Timeline(tenant, timeline, false)
	if err != nil || tl == nil {
		s.t.Fatalf("safekeeper %d: timeline %s/%s: %v", i+1, tenant, timeline, err)
	}
	return tl.State()
}

// skCompute is a compute started from the page server's basebackup of
// main, elected with the safekeepers, with the page server streaming
// main's WAL from them.
type skCompute struct {
	pg       *pgcluster.Cluster
	tenant   id.TenantID
	timeline id.TimelineID
	tl       *repo.Timeline // main, live in the page server
	wal      timelineWAL
}

// startSafekeeperTable starts a page server, three safekeepers and a
// compute streaming to them, creates table t with one row, and waits until
// the page server has ingested it.
func startSafekeeperTable(ctx context.Context, t *testing.T) (*testPageServer, *pgx.Conn, *testSafekeepers, *skCompute, *pgx.Conn) {
	t.Helper()
	ps := startPageServer(t)
	conn := ps.connect(t)
	sks := startSafekeepers(t, 3)
	c := startSafekeeperCompute(ctx, t, ps, conn, sks)
	cc := connect(t, c.pg, "postgres")
	t.Cleanup(func() { cc.Close(context.Background()) })
	exec(t, cc, "CREATE TABLE t (n int)", "INSERT INTO t VALUES (1)")
	waitIngested(t, conn, c.tenant, cc)
	return ps, conn, sks, c, cc
}

func startSafekeeperCompute(ctx context.Context, t *testing.T, ps *testPageServer, conn *pgx.Conn, sks *testSafekeepers) *skCompute {
	t.Helper()
	c := &skCompute{tenant: id.NewTenantID()}
	rows(t, conn, "tenant_create "+c.tenant.String())
	if err := importDataDir(conn, c.tenant, "main", initdbDir(t), nil); err != nil {
		t.Fatal(err)
	}
	main := branchNamed(t, rows(t, conn, "branch_list "+c.tenant.String()), "main")
	var err error
	if c.timeline, err = id.ParseTimelineID(main["timeline_id"]); err != nil {
		t.Fatal(err)
	}
	start, err := pgdata.ParseLSN(main["last_record_lsn"])
	if err != nil {
		t.Fatal(err)
	}
	settings := workload.Settings()
	settings["synchronous_standby_names"] = "ANY 2 (safekeeper1, safekeeper2, safekeeper3)"
	settings["synchronous_commit"] = "on"
	c.pg = startFromBasebackup(t, conn, fmt.Sprintf("basebackup %s main", c.tenant), settings)

	e, err := safekeeper.Elect(ctx, sks.addrs(), c.tenant, c.timeline, auth.ClientOptions{}, zerolog.New(zerolog.NewTestWriter(t)))
	if err != nil {
		t.Fatal(err)
	}
	if err := e.SetCompute(ctx, c.pg.ConnString("postgres"), start); err != nil {
		t.Fatal(err)
	}
	cmd := fmt.Sprintf("safekeepers %s main %s", c.tenant, strings.Join(sks.addrs(), ","))
	if res, err := conn.PgConn().Exec(ctx, cmd).ReadAll(); err != nil || res[0].CommandTag.String() != "SAFEKEEPERS" {
		t.Fatalf("%s: %v %v", cmd, res, err)
	}
	tn, err := ps.srv.tenants.get(c.tenant)
	if err != nil {
		t.Fatal(err)
	}
	if c.tl, err = tn.timeline("main"); err != nil {
		t.Fatal(err)
	}
	c.wal = tn.walOf(c.timeline)
	return c
}

// waitSafekeeper waits until the receiver streams from a safekeeper
// other than not, and returns its status.
func waitSafekeeper(t *testing.T, w timelineWAL, not string) api.WALStatus {
	t.Helper()
	return waitFor(t, fmt.Sprintf("streaming from a safekeeper other than %q", not), w.Status, func(st api.WALStatus) bool {
		return st.Connected && st.Safekeeper != "" && st.Safekeeper != not
	})
}

// TestWalReceiverFromSafekeepers: the page server streams a compute's
// WAL from three safekeepers (the compute waits for two of them) through
// a workload, keeps up when the safekeeper it streams from is stopped,
// and ends with the compute's pages; it reports its disk-consistent LSN
// to the safekeepers as its flush position.
func TestWalReceiverFromSafekeepers(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	ps := startPageServer(t)
	conn := ps.connect(t)
	sks := startSafekeepers(t, 3)
	c := startSafekeeperCompute(ctx, t, ps, conn, sks)
	log := testLogger(t)

	first := waitSafekeeper(t, c.wal, "")
	if !slices.Equal(first.Safekeepers, sks.addrs()) {
		t.Errorf("receiver's safekeepers %v, want %v", first.Safekeepers, sks.addrs())
	}
	rep, err := workload.Run(ctx, c.pg.ConnString("postgres"), workload.Options{Seed: 7, Scale: 0.2, Log: log})
	if err != nil {
		t.Fatalf("workload: %v (receiver: %+v)", err, c.wal.Status())
	}
	t.Logf("workload: %d steps", len(rep.Steps))
	cc := connect(t, c.pg, "postgres")
	defer cc.Close(ctx)
	exec(t, cc, "CREATE TABLE sk_pages AS SELECT g AS id, repeat('x', g % 300) AS v FROM generate_series(1, 20000) g")
	waitIngested(t, conn, c.tenant, cc)

	// Stop the safekeeper the receiver is on: it moves to another one
	// and goes on; the compute still has its quorum of two.
	cur := c.wal.Status().Safekeeper
	if cur == "" {
		t.Fatalf("receiver status %+v: no current safekeeper", c.wal.Status())
	}
	sks.stop(sks.index(cur))
	t.Logf("stopped safekeeper %s", cur)
	exec(t, cc,
		"UPDATE sk_pages SET v = 'updated' WHERE id % 7 = 0",
		"INSERT INTO sk_pages SELECT g, 'after' FROM generate_series(20001, 30000) g",
		"CHECKPOINT")
	next := waitSafekeeper(t, c.wal, cur)
	t.Logf("switched to safekeeper %s", next.Safekeeper)
	last := waitIngested(t, conn, c.tenant, cc)
	n := comparePages(ctx, t, openTestRedoManager(t), c.tenant, c.tl, cc, c.pg.DataDir(), "sk_pages", last)
	t.Logf("%d pages equal the compute's at %v", n, last)

	// The safekeeper streamed from records the page server's
	// disk-consistent LSN, not how far its WAL store is fsynced.
	i := sks.index(next.Safekeeper)
	var dcl, got pgdata.LSN
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		dcl, got = c.tl.DiskConsistentLSN(), sks.state(i, c.tenant, c.timeline).PageserverLSN
		if got == dcl || time.Now().After(deadline) {
			break
		}
	}
	if got != dcl {
		t.Errorf("safekeeper %s records the page server at %v, want its disk-consistent LSN %v (received %v)", next.Safekeeper, got, dcl, c.wal.Status().Received)
	}
	t.Logf("page server's LSN on the safekeeper: %v (disk-consistent), last record %v", got, c.tl.LastRecordLSN())

	// The HTTP API and the metrics show the set and the current one.
	var timelines []httpapi.TimelineInfo
	httpJSON(t, "GET", "http://"+ps.httpAddr+"/v1/tenant/"+c.tenant.String()+"/timeline", "", http.StatusOK, &timelines)
	if len(timelines) != 1 || timelines[0].WALReceiver == nil || timelines[0].WALReceiver.Safekeeper != next.Safekeeper ||
		!slices.Equal(timelines[0].WALReceiver.Safekeepers, sks.addrs()) {
		t.Errorf("timelines over HTTP: %+v, want main streaming from %s of %v", timelines, next.Safekeeper, sks.addrs())
	}
	metrics := httpGet(t, "http://"+ps.httpAddr+"/metrics")
	for _, a := range sks.addrs() {
		want := "0"
		if a == next.Safekeeper {
			want = "1"
		}
		line := fmt.Sprintf(`zenith_pageserver_wal_receiver_safekeeper{safekeeper=%q,tenant_id=%q,timeline_id=%q} %s`, a, c.tenant, c.timeline, want)
		if !strings.Contains(metrics, line+"\n") {
			t.Errorf("metrics lack %s", line)
		}
	}
}

// TestPageServerNeverPassesCommitLSN: with two of three safekeepers
// stopped, a commit waits while the remaining one has its WAL, which no
// quorum has; the page server streams from that one and stays at its
// commit LSN. When a second safekeeper is back, the commit completes and
// the page server gets it.
func TestPageServerNeverPassesCommitLSN(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	_, conn, sks, c, cc := startSafekeeperTable(ctx, t)

	keep := sks.index(waitSafekeeper(t, c.wal, "").Safekeeper)
	var stopped []int
	for i := range sks.nodes {
		if i != keep {
			sks.stop(i)
			stopped = append(stopped, i)
		}
	}
	before := queryLSN(ctx, t, cc, "SELECT pg_current_wal_flush_lsn()")
	waiting := connect(t, c.pg, "postgres")
	committed := make(chan error, 1)
	go func() {
		_, err := waiting.Exec(context.Background(), "INSERT INTO t SELECT generate_series(2, 1000)")
		committed <- err
	}()
	// The remaining safekeeper gets the compute's WAL, the waiting
	// commit included; its commit LSN stays below.
	var flush pgdata.LSN
	var st safekeeper.TimelineState
	for deadline := time.Now().Add(time.Minute); ; time.Sleep(50 * time.Millisecond) {
		flush = queryLSN(ctx, t, cc, "SELECT pg_current_wal_flush_lsn()")
		st = sks.state(keep, c.tenant, c.timeline)
		if flush > before && st.FlushLSN >= flush && st.CommitLSN < st.FlushLSN {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("safekeeper %d: flush LSN %v, commit LSN %v; the compute flushed %v (%v before the INSERT)", keep+1, st.FlushLSN, st.CommitLSN, flush, before)
		}
	}
	select {
	case err := <-committed:
		t.Fatalf("the INSERT returned (%v) without a quorum", err)
	default:
	}
	// Long enough for the receiver to have received and ingested
	// whatever it was sent, and to have looked for another safekeeper.
	time.Sleep(switchIdle + 2*time.Second)
	rs := c.wal.Status()
	commit := sks.state(keep, c.tenant, c.timeline).CommitLSN
	if rs.Received != commit || rs.Ingested > commit || c.tl.LastRecordLSN() > commit {
		t.Fatalf("receiver %+v (last record %v): want WAL received exactly up to the commit LSN %v and nothing ingested beyond it (the safekeeper has WAL up to %v)",
			rs, c.tl.LastRecordLSN(), commit, st.FlushLSN)
	}
	t.Logf("page server at %v (received %v); safekeeper's commit LSN %v, flush LSN %v", rs.Ingested, rs.Received, commit, st.FlushLSN)

	sks.start(stopped[0])
	select {
	case err := <-committed:
		if err != nil {
			t.Fatalf("INSERT: %v", err)
		}
		waiting.Close(ctx)
	case <-time.After(time.Minute):
		t.Fatal("the INSERT still waits a minute after a second safekeeper is back")
	}
	last := waitIngested(t, conn, c.tenant, cc)
	if last < flush {
		t.Fatalf("page server at %v after the commit, want at least %v", last, flush)
	}
}

// TestWalReceiverLeavesIdleSafekeeper: the safekeeper the page server
// streams from stops getting WAL (it voted for a newer term, so it left
// the compute's), while the other two go on committing: the receiver
// notices that nothing comes while another safekeeper is ahead, switches,
// and gets the new commits.
func TestWalReceiverLeavesIdleSafekeeper(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	_, conn, sks, c, cc := startSafekeeperTable(ctx, t)

	cur := waitSafekeeper(t, c.wal, "").Safekeeper
	host, port, _ := net.SplitHostPort(cur)
	sk, err := pgconn.Connect(ctx, fmt.Sprintf("host=%s port=%s user=zenith dbname=safekeeper sslmode=disable", host, port))
	if err != nil {
		t.Fatal(err)
	}
	vote := fmt.Sprintf("vote %s %s 2", c.tenant, c.timeline)
	res, err := sk.Exec(ctx, vote).ReadAll()
	sk.Close(ctx)
	if err != nil || len(res) != 1 || len(res[0].Rows) != 1 || string(res[0].Rows[0][0]) != "t" {
		t.Fatalf("%s on %s: %v %v", vote, cur, res, err)
	}
	stalled := sks.state(sks.index(cur), c.tenant, c.timeline).CommitLSN
	exec(t, cc, "INSERT INTO t SELECT generate_series(2, 1000)")
	next := waitSafekeeper(t, c.wal, cur)
	last := waitIngested(t, conn, c.tenant, cc)
	if st := sks.state(sks.index(cur), c.tenant, c.timeline); st.CommitLSN != stalled || last <= stalled {
		t.Fatalf("the voted safekeeper's commit LSN %v (was %v), the page server's last record %v: want the first unchanged and the second past it", st.CommitLSN, stalled, last)
	}
	t.Logf("left %s at its commit LSN %v for %s; page server at %v", cur, stalled, next.Safekeeper, last)
}

// TestSafekeepersSource: the safekeepers command and its HTTP equivalent
// set a timeline's WAL source, which callmemaybe replaces and the other
// way round; malformed addresses and unknown timelines are refused.
func TestSafekeepersSource(t *testing.T) {
	ps := startPageServer(t)
	conn := ps.connect(t)
	tenant := createImportedTenant(t, conn)
	tn, err := ps.srv.tenants.get(tenant)
	if err != nil {
		t.Fatal(err)
	}
	tl, err := tn.timeline("main")
	if err != nil {
		t.Fatal(err)
	}
	w := tn.walOf(tl.ID())
	// Nothing listens on these.
	sks := []string{freeAddr(t), freeAddr(t)}

	if _, err := conn.Exec(context.Background(), fmt.Sprintf("safekeepers %s main %s", tenant, strings.Join(sks, ","))); err != nil {
		t.Fatal(err)
	}
	st := waitWALStatus(t, w, "failing to reach the safekeepers", func(st api.WALStatus) bool { return st.LastError != "" })
	if !slices.Equal(st.Safekeepers, sks) || st.Source != "" || st.Connected || !strings.Contains(st.LastError, "no safekeeper serves") {
		t.Errorf("status after safekeepers: %+v, want the set %v, no source, not connected, no safekeeper serving", st, sks)
	}
	if _, err := conn.Exec(context.Background(), fmt.Sprintf("callmemaybe %s main host=127.0.0.1 port=1", tenant)); err != nil {
		t.Fatal(err)
	}
	if st := w.Status(); st.Safekeepers != nil || st.Source != "host=127.0.0.1 port=1" {
		t.Errorf("status after callmemaybe: %+v, want its source and no safekeepers", st)
	}
	var info httpapi.TimelineInfo
	url := "http://" + ps.httpAddr + "/v1/tenant/" + tenant.String() + "/timeline/main/safekeepers"
	httpJSON(t, "PUT", url, `{"safekeepers": ["`+sks[1]+`"]}`, http.StatusOK, &info)
	if info.WALReceiver == nil || !slices.Equal(info.WALReceiver.Safekeepers, sks[1:]) || info.WALReceiver.Source != "" {
		t.Errorf("PUT safekeepers answered %+v, want the set %v and no source", info.WALReceiver, sks[1:])
	}
	for _, c := range []struct {
		body, ref string
		status    int
	}{
		{`{"safekeepers": []}`, "main", http.StatusBadRequest},
		{`{"safekeepers": ["nohost"]}`, "main", http.StatusBadRequest},
		{`{"safekeepers": ["a:1", "a:1"]}`, "main", http.StatusBadRequest},
		{`{"safekeepers": ["a:1"], "x": 1}`, "main", http.StatusBadRequest},
		{`{"safekeepers": ["a:1"]}`, "nosuchbranch", http.StatusNotFound},
		{`{"safekeepers": ["a:1"]}`, "_main", http.StatusBadRequest},
	} {
		url := "http://" + ps.httpAddr + "/v1/tenant/" + tenant.String() + "/timeline/" + c.ref + "/safekeepers"
		var answer map[string]string
		httpJSON(t, "PUT", url, c.body, c.status, &answer)
	}
	_, err = conn.Exec(context.Background(), fmt.Sprintf("safekeepers %s nosuchbranch a:1", tenant))
	wantSQLState(t, "safekeepers of an unknown branch", err, "42704")
	if st := w.Status(); !slices.Equal(st.Safekeepers, sks[1:]) {
		t.Errorf("status after refused changes: %+v, want the set %v still", st, sks[1:])
	}
}

// waitWALStatus polls a timeline's WAL status until ok says so.
func waitWALStatus(t *testing.T, w timelineWAL, what string, ok func(api.WALStatus) bool) api.WALStatus {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		st := w.Status()
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("WAL status %+v: not %s after a minute", st, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// httpGet returns the body of a GET that answers 200.
func httpGet(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %v", url, resp.Status, err)
	}
	return string(b)
}
