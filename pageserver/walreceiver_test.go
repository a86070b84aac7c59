package pageserver

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/pageserver/walingest"
	"github.com/zenithdb/zenith/pageserver/walreceiver"
	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/pgcluster"
	"github.com/zenithdb/zenith/repo/pgcluster/pgtest"
	"github.com/zenithdb/zenith/repo/pgcluster/workload"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/vfs"
	"github.com/zenithdb/zenith/walredo"
)

// rcvCompute is a compute whose data directory was imported into a fresh
// timeline, set up to wait for the page server as its synchronous
// standby, not started yet.
type rcvCompute struct {
	pg       *pgcluster.Cluster
	workdir  string // the page server's repository
	walDir   string // the timeline's WAL store
	tenant   id.TenantID
	timeline id.TimelineID
	// fs is what the WAL store is opened on (nil: vfs.Default).
	fs vfs.FS
}

func newRcvCompute(t *testing.T) *rcvCompute {
	t.Helper()
	settings := workload.Settings()
	settings["synchronous_standby_names"] = walreceiver.ReplicationSlot
	settings["synchronous_commit"] = "on"
	pg := pgtest.New(t, settings)
	c := &rcvCompute{pg: pg, workdir: t.TempDir()}
	c.walDir = filepath.Join(c.workdir, "wal")

	r := openTestRepo(t, c.workdir)
	conf := repo.DefaultTenantConfig()
	// Small in-memory layers: the repository flushes during the test, so
	// a crash loses only what came after its last flush.
	conf.CheckpointDistance = 1 << 20
	tn, err := r.CreateTenant(id.NewTenantID(), conf)
	if err != nil {
		t.Fatal(err)
	}
	tl, err := tn.CreateTimeline(id.NewTimelineID(), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := walingest.ImportDataDir(context.Background(), tl, pg.DataDir(), nil, zerolog.Nop()); err != nil {
		t.Fatal(err)
	}
	c.tenant, c.timeline = tn.ID(), tl.ID()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	return c
}

// rcvRedoModule builds the walredo module if needed and returns its path.
func rcvRedoModule(t *testing.T) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	binDir, err := pgcluster.FindBinDir(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	dir := filepath.Join("..", "walredo", "pgext")
	if out, err := osexec.CommandContext(ctx, "make", "-s", "-C", dir, "PG_CONFIG="+filepath.Join(binDir, "pg_config")).CombinedOutput(); err != nil {
		t.Fatalf("build the walredo module: %v\n%s", err, out)
	}
	p, err := filepath.Abs(filepath.Join(dir, walredo.ExtensionFile))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// rcvTempDir makes a directory that the postgres OS user can reach
// (unlike t.TempDir()) and removes it when the test ends.
func rcvTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "zenith-walreceiver-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// rcvRedo opens a walredo manager whose scratch directory is dir, inside
// a directory the postgres OS user can reach.
func rcvRedo(t *testing.T, module, dir string) *walredo.Manager {
	t.Helper()
	cfg := walredo.DefaultConfig()
	cfg.Dir, cfg.Extension = dir, module
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	m, err := walredo.Open(ctx, cfg, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { m.Close() })
	return m
}

// rcvNode is the WAL side of a page server for the compute's timeline.
type rcvNode struct {
	repo  *repo.Repository
	tl    *repo.Timeline
	store *walreceiver.WALStore
	ing   *walingest.WalIngest
	rcv   *walreceiver.WalReceiver
}

func openRcvNode(ctx context.Context, c *rcvCompute, m *walredo.Manager, log zerolog.Logger) (*rcvNode, error) {
	cfg := repo.DefaultConfig(c.workdir)
	cfg.Redo = NewRedo(m)
	r, err := repo.Open(cfg)
	if err != nil {
		return nil, err
	}
	n := &rcvNode{repo: r}
	tn, err := r.Tenant(c.tenant)
	if err == nil {
		n.tl, err = tn.Timeline(c.timeline)
	}
	var ing *walingest.WalIngest
	if err == nil {
		ing, err = walingest.NewWalIngest(ctx, n.tl, log)
	}
	if err == nil {
		fs := c.fs
		if fs == nil {
			fs = vfs.Default
		}
		n.store, err = walreceiver.OpenWALStore(fs, c.walDir, ing.SegSize(), log)
	}
	if err != nil {
		r.Close()
		return nil, err
	}
	n.ing = ing
	n.rcv = walreceiver.NewWalReceiver(n.tl, ing, n.store, log)
	return n, nil
}

func (n *rcvNode) close() error {
	return errors.Join(n.store.Close(), n.repo.Close())
}

func testLogger(t *testing.T) zerolog.Logger {
	return zerolog.New(zerolog.ConsoleWriter{Out: testLogOutput{t}, NoColor: true, PartsExclude: []string{zerolog.TimestampFieldName}}).Level(zerolog.InfoLevel)
}

type testLogOutput struct{ t *testing.T }

func (w testLogOutput) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func queryLSN(ctx context.Context, t *testing.T, conn *pgx.Conn, sql string) pgdata.LSN {
	t.Helper()
	var s string
	if err := conn.QueryRow(ctx, sql).Scan(&s); err != nil {
		t.Fatalf("%s: %v", sql, err)
	}
	lsn, err := pgdata.ParseLSN(s)
	if err != nil {
		t.Fatal(err)
	}
	return lsn
}

// relationOf returns the relation file node of a table in the database
// conn is connected to.
func relationOf(ctx context.Context, t *testing.T, conn *pgx.Conn, table string) pgdata.RelFileNode {
	t.Helper()
	var db, rel uint32
	err := conn.QueryRow(ctx, "SELECT d.oid, pg_relation_filenode($1::regclass) FROM pg_database d WHERE d.datname = current_database()", table).Scan(&db, &rel)
	if err != nil {
		t.Fatal(err)
	}
	return pgdata.RelFileNode{SpcNode: pgdata.DefaultTablespaceOID, DbNode: db, RelNode: rel}
}

// TestWalReceiverSyncStandby attaches the receiver to a compute as its
// only synchronous standby and runs the mixed workload: every commit
// returns only because the receiver flushes. At the end the compute sees
// us as its sync standby with its own flush position, the timeline has
// ingested everything, and a table's pages read through the repository
// equal the compute's.
func TestWalReceiverSyncStandby(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c := newRcvCompute(t)
	m := rcvRedo(t, rcvRedoModule(t), filepath.Join(rcvTempDir(t), "walredo"))
	log := testLogger(t)
	n, err := openRcvNode(ctx, c, m, log)
	if err != nil {
		t.Fatal(err)
	}
	defer func() {
		if err := n.close(); err != nil {
			t.Error(err)
		}
	}()
	// The port is chosen at start; until the source is set nothing waits
	// for us.
	if err := c.pg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := n.rcv.SetSource(c.pg.ConnString("postgres")); err != nil {
		t.Fatal(err)
	}
	// No periodic status: the flush and applied positions below reach
	// the compute only as the receiver reports them when they move.
	n.rcv.SetIntervals(time.Hour, time.Hour)
	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- n.rcv.Run(runCtx) }()
	defer func() {
		stop()
		if err := <-ran; !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
	}()

	began := time.Now()
	rep, err := workload.Run(ctx, c.pg.ConnString("postgres"), workload.Options{Seed: 5, Scale: 0.3, Log: log})
	if err != nil {
		t.Fatalf("workload: %v (receiver: %+v)", err, n.rcv.Status())
	}
	t.Logf("workload: %d steps, %v to %v, in %v", len(rep.Steps), rep.Steps[0].Start, rep.Steps[len(rep.Steps)-1].End, time.Since(began).Round(time.Millisecond))

	conn, err := pgx.Connect(ctx, c.pg.ConnString("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	exec(t, conn,
		"CREATE TABLE rcv_pages AS SELECT g AS id, repeat('x', g % 300) AS v FROM generate_series(1, 20000) g",
		"UPDATE rcv_pages SET v = 'updated' WHERE id % 7 = 0",
		"CHECKPOINT")
	end := queryLSN(ctx, t, conn, "SELECT pg_current_wal_lsn()")
	waitCtx, done := context.WithTimeout(ctx, 2*time.Minute)
	err = n.tl.WaitForLSN(waitCtx, end)
	done()
	if err != nil {
		t.Fatalf("the timeline did not reach the compute's %v: %v (receiver: %+v)", end, err, n.rcv.Status())
	}

	// The flush and applied positions reach the compute through status
	// updates; the applied one comes after the flush (the records are
	// ingested once durable), so it reaches the end of the compute's WAL
	// only if the receiver reports it on its own (no periodic status;
	// the compute's keepalives ask for a reply only every 30 s).
	var app, state string
	var flush, replay, current pgdata.LSN
	for deadline := time.Now().Add(20 * time.Second); ; {
		var f, r, c string
		err := conn.QueryRow(ctx, "SELECT application_name, sync_state, flush_lsn::text, coalesce(replay_lsn::text, '0/0'), pg_current_wal_lsn()::text FROM pg_stat_replication").Scan(&app, &state, &f, &r, &c)
		if err != nil {
			t.Fatalf("pg_stat_replication: %v", err)
		}
		if flush, err = pgdata.ParseLSN(f); err == nil {
			if replay, err = pgdata.ParseLSN(r); err == nil {
				current, err = pgdata.ParseLSN(c)
			}
		}
		if err != nil {
			t.Fatal(err)
		}
		if flush >= end && replay == current || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if replay != current {
		t.Errorf("pg_stat_replication.replay_lsn = %v, the compute's WAL ends at %v (flushed to %v): the applied position was not reported", replay, current, flush)
	}
	if app != walreceiver.ReplicationSlot || state != "sync" {
		t.Errorf("pg_stat_replication: application_name %q, sync_state %q; want %q, sync", app, state, walreceiver.ReplicationSlot)
	}
	if now := queryLSN(ctx, t, conn, "SELECT pg_current_wal_lsn()"); flush != now {
		t.Errorf("pg_stat_replication.flush_lsn = %v, want the compute's pg_current_wal_lsn %v", flush, now)
	}
	st := n.rcv.Status()
	if !st.Connected || st.Flushed < end || st.Ingested < end || st.Received < end {
		t.Errorf("receiver status %+v, want connected with everything up to %v", st, end)
	}

	// Pages through the repository equal the compute's own files
	// (flushed by the CHECKPOINT).
	nblocks := comparePages(ctx, t, m, c.tenant, n.tl, conn, c.pg.DataDir(), "rcv_pages", end)
	t.Logf("%d pages equal the compute's at %v", nblocks, end)
}

// comparePages checks that every page of table (of the database conn is
// connected to), read through tl at lsn and masked as redo masks pages,
// equals the page in the compute's own file, which a CHECKPOINT after the
// table's last change has written; it returns how many pages there are.
func comparePages(ctx context.Context, t *testing.T, m *walredo.Manager, tenant id.TenantID, tl *repo.Timeline, conn *pgx.Conn, dataDir, table string, lsn pgdata.LSN) uint32 {
	t.Helper()
	rel := relationOf(ctx, t, conn, table)
	var path string
	if err := conn.QueryRow(ctx, "SELECT pg_relation_filepath($1::regclass)", table).Scan(&path); err != nil {
		t.Fatal(err)
	}
	file, err := os.ReadFile(filepath.Join(dataDir, path))
	if err != nil {
		t.Fatal(err)
	}
	nblocks, err := tl.RelSize(ctx, rel, pgdata.ForkMain, lsn)
	if err != nil {
		t.Fatal(err)
	}
	if want := uint32(len(file) / pgdata.BlockSize); nblocks != want || nblocks == 0 {
		t.Fatalf("%s: relation size through the repository %d blocks, the file has %d", table, nblocks, want)
	}
	for blk := uint32(0); blk < nblocks; blk++ {
		got, err := tl.Get(ctx, key.RelBlock(rel, pgdata.ForkMain, blk), lsn)
		if err != nil {
			t.Fatalf("%s block %d: %v", table, blk, err)
		}
		want := file[blk*pgdata.BlockSize : (blk+1)*pgdata.BlockSize]
		gotM, err1 := m.Mask(ctx, tenant.String(), pgdata.RmgrHeap, blk, got)
		wantM, err2 := m.Mask(ctx, tenant.String(), pgdata.RmgrHeap, blk, want)
		if err := errors.Join(err1, err2); err != nil {
			t.Fatal(err)
		}
		if string(gotM) != string(wantM) {
			t.Fatalf("block %d of %s differs from the compute's (page LSN %v, compute's %v)",
				blk, table, pageLSN(got), pageLSN(want))
		}
	}
	return nblocks
}

// pageLSN is pd_lsn of a page.
func pageLSN(page []byte) pgdata.LSN {
	return pgdata.LSN(uint64(binary.LittleEndian.Uint32(page[0:]))<<32 | uint64(binary.LittleEndian.Uint32(page[4:])))
}

// heapInts returns the first column, an int4, of every tuple on a heap
// page (PageHeaderData.pd_lower, ItemIdData, HeapTupleHeaderData.t_hoff).
func heapInts(page []byte) ([]int32, error) {
	le := binary.LittleEndian
	lower := int(le.Uint16(page[12:]))
	if lower < 24 || lower > len(page) {
		return nil, fmt.Errorf("pd_lower %d", lower)
	}
	var out []int32
	for p := 24; p+4 <= lower; p += 4 {
		lp := le.Uint32(page[p:])
		off, flags, length := int(lp&0x7FFF), (lp>>15)&3, int(lp>>17)
		if flags != 1 { // LP_NORMAL
			continue
		}
		if off+length > len(page) || length < 24 {
			return nil, fmt.Errorf("line pointer %d: offset %d length %d", (p-24)/4+1, off, length)
		}
		hoff := int(page[off+22])
		if hoff+4 > length {
			return nil, fmt.Errorf("line pointer %d: t_hoff %d in a %d-byte tuple", (p-24)/4+1, hoff, length)
		}
		out = append(out, int32(le.Uint32(page[off+hoff:])))
	}
	return out, nil
}

// otherSystem is a WalIngest that claims another database system.
type otherSystem struct{ *walingest.WalIngest }

func (otherSystem) SystemID() uint64 { return 42 }

// waitFor polls status until ok says so, for a minute at most; what is
// what the test waits for.
func waitFor[S any](t *testing.T, what string, status func() S, ok func(S) bool) S {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		st := status()
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("status %+v: not %s after a minute", st, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestWalReceiverSource checks what a source change does: a source of
// another database system is refused (no slot, no streaming), the right
// one streams, "" stops streaming, and a malformed one is rejected.
func TestWalReceiverSource(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := newRcvCompute(t)
	if err := c.pg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	m := rcvRedo(t, rcvRedoModule(t), filepath.Join(rcvTempDir(t), "walredo"))
	log := testLogger(t)
	n, err := openRcvNode(ctx, c, m, log)
	if err != nil {
		t.Fatal(err)
	}
	defer n.close()
	ing, err := walingest.NewWalIngest(ctx, n.tl, log)
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, c.pg.ConnString("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	count := func(sql string) int {
		t.Helper()
		var n int
		if err := conn.QueryRow(ctx, sql).Scan(&n); err != nil {
			t.Fatal(err)
		}
		return n
	}

	// Another system: refused before any slot is made.
	other := walreceiver.NewWalReceiver(n.tl, otherSystem{ing}, n.store, log)
	if err := other.SetSource(c.pg.ConnString("postgres")); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- other.Run(runCtx) }()
	st := waitFor(t, "refused", other.Status, func(st walreceiver.WalReceiverStatus) bool { return st.LastError != "" })
	if !strings.Contains(st.LastError, walreceiver.ErrSystemMismatch.Error()) || st.Connected {
		t.Errorf("status with another system's source: %+v, want not connected and %q", st, walreceiver.ErrSystemMismatch)
	}
	if got := count("SELECT count(*) FROM pg_replication_slots"); got != 0 {
		t.Errorf("%d replication slots after a refused source, want 0", got)
	}
	stop()
	<-ran

	// Our system: streams through our slot, until the source is "".
	r := walreceiver.NewWalReceiver(n.tl, ing, n.store, log)
	if got := r.Status().Source; got != c.pg.ConnString("postgres") {
		t.Errorf("a new receiver's source %q, want the stored %q", got, c.pg.ConnString("postgres"))
	}
	// Short intervals: an idle source must not look dead.
	r.SetIntervals(100*time.Millisecond, time.Second)
	runCtx, stop = context.WithCancel(ctx)
	defer stop()
	go func() { ran <- r.Run(runCtx) }()
	waitFor(t, "connected", r.Status, func(st walreceiver.WalReceiverStatus) bool { return st.Connected })
	if got := count("SELECT count(*) FROM pg_replication_slots WHERE slot_name = 'pageserver' AND slot_type = 'physical' AND active"); got != 1 {
		t.Errorf("%d active physical slots named pageserver, want 1", got)
	}
	var pid int
	if err := conn.QueryRow(ctx, "SELECT pid FROM pg_stat_replication").Scan(&pid); err != nil {
		t.Fatal(err)
	}
	time.Sleep(3 * time.Second)
	if st := r.Status(); !st.Connected || st.LastError != "" || time.Since(st.LastMessage) > time.Second {
		t.Errorf("status after 3 s of an idle source: %+v, want still connected, hearing from it", st)
	}
	if got := count(fmt.Sprintf("SELECT count(*) FROM pg_stat_replication WHERE pid = %d", pid)); got != 1 {
		t.Error("the walsender streaming to us changed while the source was idle")
	}
	if err := r.SetSource(""); err != nil {
		t.Fatal(err)
	}
	st = waitFor(t, "disconnected", r.Status, func(st walreceiver.WalReceiverStatus) bool { return !st.Connected })
	if st.LastError != "" || st.Source != "" {
		t.Errorf("status after SetSource(\"\"): %+v, want no source and no error", st)
	}
	for deadline := time.Now().Add(30 * time.Second); count("SELECT count(*) FROM pg_stat_replication") != 0; {
		if time.Now().After(deadline) {
			t.Fatal("the compute still streams to us after SetSource(\"\")")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if err := r.SetSource("host=127.0.0.1 port=notaport"); err == nil {
		t.Error("SetSource accepted a malformed connection string")
	}
	stop()
	if err := <-ran; !errors.Is(err, context.Canceled) {
		t.Errorf("Run: %v", err)
	}
}
