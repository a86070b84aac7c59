package pageserver

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/pageserver/basebackup"
	"github.com/zenithdb/zenith/pageserver/walingest"
	"github.com/zenithdb/zenith/pageserver/walreceiver"
	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/pgcluster"
	"github.com/zenithdb/zenith/repo/pgcluster/pgtest"
	"github.com/zenithdb/zenith/repo/pgcluster/workload"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/tomlconf"
	"github.com/zenithdb/zenith/repo/vfs"
)

// stallTenant is one tenant of TestStalledTenantOthersGoOn: a compute
// that waits for the page server as its synchronous standby, and the
// tenant's timeline with its WAL store and receiver in the shared
// repository.
type stallTenant struct {
	name     string
	pg       *pgcluster.Cluster
	tenant   id.TenantID
	timeline id.TimelineID
	walDir   string
	tl       *repo.Timeline
	store    *walreceiver.WALStore
	rcv      *walreceiver.WalReceiver
	conn     *pgx.Conn
	rows     int // rows committed (acknowledged) so far
}

// TestStalledTenantOthersGoOn runs two tenants on one repository, each
// with a real compute that waits for the page server as its synchronous
// standby, and makes tenant A's disk stop answering: first the fsync of
// A's WAL store, then the fsync of A's layer flush, each held until
// released (vfs.Gate). Meanwhile B's commits are acknowledged, B's
// layers are flushed, B's pages and a basebackup of B are read, A's
// pages are read, and A is reported stalled; while A's WAL fsync is held
// A's commit is not acknowledged. After each release A goes on, and at
// the end both timelines hold their computes' pages, every acknowledged
// row. Before the repository flushed each timeline on its own goroutine,
// B's layers were not flushed while A's flush was held (the background
// flush went through the timelines one after the other).
func TestStalledTenantOthersGoOn(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	workdir := t.TempDir()
	conf := repo.DefaultTenantConfig()
	conf.CheckpointDistance = 1 << 20
	// B's layers are flushed by the background loop within a second
	// of its commits, as long as nothing holds the loop up.
	conf.CheckpointTimeout = tomlconf.Duration(200 * time.Millisecond)
	a, b := &stallTenant{name: "A"}, &stallTenant{name: "B"}
	tenants := []*stallTenant{a, b}
	settings := workload.Settings()
	settings["synchronous_standby_names"] = walreceiver.ReplicationSlot
	settings["synchronous_commit"] = "on"
	r := openTestRepo(t, workdir)
	for _, st := range tenants {
		st.pg = pgtest.New(t, settings)
		st.walDir = filepath.Join(workdir, "wal-"+st.name)
		tn, err := r.CreateTenant(id.NewTenantID(), conf)
		if err != nil {
			t.Fatal(err)
		}
		tl, err := tn.CreateTimeline(id.NewTimelineID(), 0)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := walingest.ImportDataDir(ctx, tl, st.pg.DataDir(), nil, zerolog.Nop()); err != nil {
			t.Fatal(err)
		}
		st.tenant, st.timeline = tn.ID(), tl.ID()
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}

	faulty := vfs.NewFaulty(vfs.Default)
	m := rcvRedo(t, rcvRedoModule(t), filepath.Join(rcvTempDir(t), "walredo"))
	log := testLogger(t)
	cfg := repo.DefaultConfig(workdir)
	cfg.FS, cfg.Redo, cfg.Logger = faulty, NewRedo(m), log
	cfg.FlushInterval = 50 * time.Millisecond
	r, err := repo.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	// Deferred first, run last: after every gate is released.
	defer func() {
		if err := r.Close(); err != nil {
			t.Error(err)
		}
	}()
	runCtx, stop := context.WithCancel(ctx)
	var ran []chan error
	defer func() {
		stop()
		for _, c := range ran {
			if err := <-c; !errors.Is(err, context.Canceled) {
				t.Errorf("Run: %v", err)
			}
		}
		for _, st := range tenants {
			if st.store != nil {
				st.store.Close()
			}
		}
	}()
	// A failure while a gate holds an fsync must not leave the
	// receivers' Run, and the deferred Close, waiting for it.
	var gates []*vfs.Gate
	defer func() {
		for _, g := range gates {
			g.Release()
		}
	}()
	for _, st := range tenants {
		tn, err := r.Tenant(st.tenant)
		if err != nil {
			t.Fatal(err)
		}
		if st.tl, err = tn.Timeline(st.timeline); err != nil {
			t.Fatal(err)
		}
		tlog := log.With().Str("tenant", st.name).Logger()
		ing, err := walingest.NewWalIngest(ctx, st.tl, tlog)
		if err != nil {
			t.Fatal(err)
		}
		if st.store, err = walreceiver.OpenWALStore(faulty, st.walDir, ing.SegSize(), tlog); err != nil {
			t.Fatal(err)
		}
		st.rcv = walreceiver.NewWalReceiver(st.tl, ing, st.store, tlog)
		if err := st.pg.Start(ctx); err != nil {
			t.Fatal(err)
		}
		if err := st.rcv.SetSource(st.pg.ConnString("postgres")); err != nil {
			t.Fatal(err)
		}
		c := make(chan error, 1)
		ran = append(ran, c)
		go func() { c <- st.rcv.Run(runCtx) }()
		if st.conn, err = pgx.Connect(ctx, st.pg.ConnString("postgres")); err != nil {
			t.Fatal(err)
		}
		defer st.conn.Close(context.Background())
		exec(t, st.conn, "CREATE TABLE stall (id int PRIMARY KEY, pad text)")
	}
	insert := func(st *stallTenant) error {
		cctx, done := context.WithTimeout(ctx, 2*time.Minute)
		defer done()
		_, err := st.conn.Exec(cctx, "INSERT INTO stall VALUES ($1, repeat('x', 300))", st.rows)
		if err == nil {
			st.rows++
		}
		return err
	}
	commit := func(st *stallTenant, n int) {
		t.Helper()
		for range n {
			if err := insert(st); err != nil {
				t.Fatalf("commit %d on %s: %v (receiver: %+v)", st.rows, st.name, err, st.rcv.Status())
			}
		}
	}
	for _, st := range tenants {
		commit(st, 100)
	}

	// B goes on while A's disk does not answer: its commits are
	// acknowledged, its layers flushed, its pages and a basebackup read.
	bGoesOn := func(phase string) {
		t.Helper()
		from := b.rows
		commit(b, 50)
		end := queryLSN(ctx, t, b.conn, "SELECT pg_current_wal_lsn()")
		waitFor(t, "B's layers flushed up to its commits "+phase,
			func() string { return fmt.Sprintf("B disk-consistent %v, want %v", b.tl.DiskConsistentLSN(), end) },
			func(string) bool { return b.tl.DiskConsistentLSN() >= end })
		if bb := takeBasebackup(t, b.tl, b.tl.LastRecordLSN(), basebackup.Options{}); len(bb) == 0 {
			t.Errorf("%s: empty basebackup of B", phase)
		}
		if n := b.tl.LastRecordLSN(); n < end {
			t.Errorf("%s: B ingested up to %v, its compute is at %v", phase, n, end)
		}
		t.Logf("%s: B committed %d rows, flushed up to %v", phase, b.rows-from, b.tl.DiskConsistentLSN())
	}
	// With a threshold of 0 a write in progress is stalled at once: A,
	// held, must say which; B, never held, must not be stalled for long.
	aStalled := func(phase, want string) {
		t.Helper()
		if op, since := timelineStall(a.tl, a.rcv, time.Now(), 0); op != want || since.IsZero() {
			t.Errorf("%s: A reported stalled %q since %v, want %q", phase, op, since, want)
		}
		if op, _ := timelineStall(b.tl, b.rcv, time.Now(), time.Minute); op != "" {
			t.Errorf("%s: B reported stalled %q", phase, op)
		}
	}
	aClears := func(phase string) {
		t.Helper()
		waitFor(t, "A's stall report cleared "+phase,
			func() string { op, _ := timelineStall(a.tl, a.rcv, time.Now(), 0); return op },
			func(op string) bool { return op == "" })
	}
	relA := relationOf(ctx, t, a.conn, "stall")
	aReadable := func(phase string) {
		t.Helper()
		rctx, done := context.WithTimeout(ctx, time.Minute)
		defer done()
		if n, err := a.tl.RelSize(rctx, relA, pgdata.ForkMain, a.tl.LastRecordLSN()); err != nil || n == 0 {
			t.Errorf("%s: A's table through the repository: %d blocks, %v", phase, n, err)
		}
	}

	// 1. A's WAL store fsync does not return.
	gate := vfs.NewGate(vfs.OpSync, func(name string) bool { return strings.HasPrefix(name, a.walDir) })
	gates = append(gates, gate)
	faulty.SetRule(gate.Rule)
	aDone := make(chan error, 1)
	go func() { aDone <- insert(a) }()
	select {
	case <-gate.Held():
	case <-time.After(2 * time.Minute):
		t.Fatal("A's WAL fsync was not held")
	}
	bGoesOn("A's WAL fsync held")
	aStalled("A's WAL fsync held", walreceiver.OpStoreSync)
	aReadable("A's WAL fsync held")
	select {
	case err := <-aDone:
		t.Fatalf("A's commit returned (%v) while its WAL fsync was held", err)
	default:
	}
	if f, s := a.rcv.Status().Flushed, a.store.Flushed(); f > s {
		t.Errorf("A reported %v flushed, its store synced %v", f, s)
	}
	gate.Release()
	if err := <-aDone; err != nil {
		t.Fatalf("A's commit after the release: %v", err)
	}
	commit(a, 20)
	aClears("after A's WAL fsync was released")

	// 2. A's layer flush does not return: its layer file's fsync is held.
	tenantDir := filepath.Join("tenants", a.tenant.String())
	gate = vfs.NewGate(vfs.OpSync, func(name string) bool { return strings.Contains(name, tenantDir) })
	gates = append(gates, gate)
	faulty.SetRule(gate.Rule)
	commit(a, 50)
	// The gate may hold a compaction of A first: wait for the flush.
	waitFor(t, "A's layer flush held",
		func() string { op, _ := a.tl.FlushStalled(time.Now(), 0); return op },
		func(op string) bool { return op == repo.OpLayerWrite })
	aDisk := a.tl.DiskConsistentLSN()
	bGoesOn("A's layer flush held")
	aStalled("A's layer flush held", repo.OpLayerWrite)
	aReadable("A's layer flush held")
	if got := a.tl.DiskConsistentLSN(); got != aDisk {
		t.Errorf("A's disk-consistent LSN moved from %v to %v with its flush held", aDisk, got)
	}
	gate.Release()
	faulty.SetRule(nil)
	commit(a, 20)

	// Every acknowledged row of both is in the repository.
	for _, st := range tenants {
		exec(t, st.conn, "CHECKPOINT")
		end := queryLSN(ctx, t, st.conn, "SELECT pg_current_wal_lsn()")
		wctx, done := context.WithTimeout(ctx, 2*time.Minute)
		err := st.tl.WaitForLSN(wctx, end)
		done()
		if err != nil {
			t.Fatalf("%s did not reach its compute's %v: %v", st.name, end, err)
		}
		nblocks := comparePages(ctx, t, m, st.tenant, st.tl, st.conn, st.pg.DataDir(), "stall", end)
		var rows int
		if err := st.conn.QueryRow(ctx, "SELECT count(*) FROM stall").Scan(&rows); err != nil || rows != st.rows {
			t.Errorf("%s: %d rows in the compute (%v), %d acknowledged", st.name, rows, err, st.rows)
		}
		t.Logf("%s: %d acknowledged rows, %d pages equal the compute's at %v", st.name, st.rows, nblocks, end)
	}
	aClears("at the end")
}
