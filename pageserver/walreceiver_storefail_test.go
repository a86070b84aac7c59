package pageserver

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/zenithdb/zenith/pageserver/walreceiver"
	"github.com/zenithdb/zenith/repo/pgcluster/pgtest"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/vfs"
	"github.com/zenithdb/zenith/walredo"
)

// storeFailRun is a receiver whose WAL store is on a vfs.Faulty, running
// with a compute as its only synchronous standby, and a connection to the
// compute that commits into table.
type storeFailRun struct {
	c      *rcvCompute
	n      *rcvNode
	faulty *vfs.Faulty
	redo   *walredo.Manager
	conn   *pgx.Conn
	table  string
	ran    chan error
	// stopped is set once a commit failed: Run's end is reported there.
	stopped bool
}

// startStoreFailRun starts a storeFailRun with the table table, and
// checks, until the test ends, that the flush position the receiver
// reports never passes what the store synced.
func startStoreFailRun(ctx context.Context, t *testing.T, table string) *storeFailRun {
	t.Helper()
	r := &storeFailRun{c: newRcvCompute(t), faulty: vfs.NewFaulty(vfs.Default), table: table, ran: make(chan error, 1)}
	r.c.fs = r.faulty
	r.redo = rcvRedo(t, rcvRedoModule(t), filepath.Join(rcvTempDir(t), "walredo"))
	n, err := openRcvNode(ctx, r.c, r.redo, testLogger(t))
	if err != nil {
		t.Fatal(err)
	}
	r.n = n
	t.Cleanup(func() {
		if err := n.close(); err != nil {
			t.Error(err)
		}
	})
	if err := r.c.pg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := n.rcv.SetSource(r.c.pg.ConnString("postgres")); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	go func() { r.ran <- n.rcv.Run(runCtx) }()
	t.Cleanup(func() {
		stop()
		if err := <-r.ran; !r.stopped && !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
	})

	var overReported atomic.Value
	watchCtx, endWatch := context.WithCancel(ctx)
	watched := make(chan struct{})
	go func() {
		defer close(watched)
		for watchCtx.Err() == nil {
			synced := n.store.Flushed()
			if st := n.rcv.Status(); st.Flushed > synced && st.Flushed > n.store.Flushed() {
				overReported.Store(fmt.Sprintf("reported flushed %v, store synced %v", st.Flushed, synced))
			}
			time.Sleep(time.Millisecond)
		}
	}()
	t.Cleanup(func() {
		endWatch()
		<-watched
		if v := overReported.Load(); v != nil {
			t.Errorf("the receiver reported WAL flushed that the store had not synced: %v", v)
		}
	})

	r.conn, err = pgx.Connect(ctx, r.c.pg.ConnString("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.conn.Close(context.Background()) })
	exec(t, r.conn, "CREATE TABLE "+table+" (id int PRIMARY KEY, pad text)")
	return r
}

// commit commits the rows from to to, one by one, each within two
// minutes.
func (r *storeFailRun) commit(ctx context.Context, t *testing.T, from, to int) {
	t.Helper()
	for i := from; i < to; i++ {
		cctx, done := context.WithTimeout(ctx, 2*time.Minute)
		_, err := r.conn.Exec(cctx, "INSERT INTO "+r.table+" VALUES ($1, repeat('x', 500))", i)
		done()
		if err != nil {
			r.stopped = true
			select {
			case rerr := <-r.ran:
				r.ran <- rerr // for the deferred wait
				t.Fatalf("commit %d: %v; the receiver stopped: %v", i, err, rerr)
			default:
			}
			t.Fatalf("commit %d: %v (receiver: %+v)", i, err, r.n.rcv.Status())
		}
	}
}

// checkPages waits until the timeline reaches the compute's WAL end after
// a checkpoint and compares the table's pages with the compute's.
func (r *storeFailRun) checkPages(ctx context.Context, t *testing.T, what string) {
	t.Helper()
	exec(t, r.conn, "CHECKPOINT")
	end := queryLSN(ctx, t, r.conn, "SELECT pg_current_wal_lsn()")
	waitCtx, done := context.WithTimeout(ctx, 2*time.Minute)
	err := r.n.tl.WaitForLSN(waitCtx, end)
	done()
	if err != nil {
		t.Fatalf("the timeline did not reach the compute's %v: %v (receiver: %+v)", end, err, r.n.rcv.Status())
	}
	nblocks := comparePages(ctx, t, r.redo, r.c.tenant, r.n.tl, r.conn, r.c.pg.DataDir(), r.table, end)
	t.Logf("%s: %d pages equal the compute's at %v", what, nblocks, end)
}

// TestWalReceiverFailedFsync makes one fsync of the WAL store fail while
// a compute commits with the receiver as its only synchronous standby.
// The receiver must not stop (it used to, until the page server was
// restarted, and every commit after it waited for ever): it cuts the
// store back to its last good sync, reports the failure, streams again
// from there, and the waiting commit and those after it are acknowledged.
// The flush position it reports never passes what the store synced, and
// the timeline ends with the compute's pages.
func TestWalReceiverFailedFsync(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	r := startStoreFailRun(ctx, t, "fsync_fail")
	r.commit(ctx, t, 0, 50)

	// The next sync of a segment file fails, once.
	r.faulty.SetRule(vfs.FailOnce(vfs.OpSync, func(name string) bool {
		return strings.HasPrefix(filepath.Base(name), "0000000")
	}))
	r.commit(ctx, t, 50, 250)
	r.faulty.SetRule(nil)

	st := r.n.rcv.Status()
	if st.StoreErrors != 1 {
		t.Errorf("receiver status counts %d WAL store errors, want 1 (the injected fsync failure)", st.StoreErrors)
	}
	if st.StoreError != "" {
		t.Errorf("receiver status still says the store fails: %q", st.StoreError)
	}
	r.checkPages(ctx, t, "after a failed fsync")
}

// TestWalReceiverFullDisk fills the WAL store's disk while a compute
// commits with the receiver as its only synchronous standby: every create
// and every write fails for want of space but for writes into the segment
// files, which are preallocated and need none. Commits must stop being
// acknowledged all the same (the receiver reports no flush while the disk
// is full; before, it went on until its ingest backlog was full), the
// receiver says why and keeps running, and once space is back the waiting
// commit and those after it are acknowledged, and the timeline ends with
// the compute's pages.
func TestWalReceiverFullDisk(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	r := startStoreFailRun(ctx, t, "disk_full")
	r.commit(ctx, t, 0, 50)

	atFill := r.n.rcv.Acknowledged()
	r.faulty.SetRule(func(op vfs.Op, name string) error {
		if (op == vfs.OpCreate || op == vfs.OpWrite) && len(filepath.Base(name)) != pgdata.WALFileNameLen {
			return &vfs.DiskFullError{Path: name, Err: syscall.ENOSPC}
		}
		return nil
	})
	// A client commits rows one by one on a connection of its own.
	bg, err := pgx.Connect(ctx, r.c.pg.ConnString("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	var committed atomic.Int64
	bgCtx, bgCancel := context.WithCancel(ctx)
	stopBG, bgDone, bgEnded := make(chan struct{}), make(chan error, 1), make(chan struct{})
	defer func() {
		bgCancel()
		<-bgEnded
		bg.Close(context.Background())
	}()
	go func() {
		defer close(bgEnded)
		for i := 50; ; i++ {
			select {
			case <-stopBG:
				bgDone <- nil
				return
			default:
			}
			if _, err := bg.Exec(bgCtx, "INSERT INTO disk_full VALUES ($1, repeat('x', 500))", i); err != nil {
				bgDone <- err
				return
			}
			committed.Add(1)
		}
	}()

	// Commits go on until the store's next check for space (at most a
	// second after its last one), then wait.
	st := r.n.rcv.Status()
	for deadline := time.Now().Add(2 * time.Minute); !strings.Contains(st.StoreError, "disk full"); st = r.n.rcv.Status() {
		if time.Now().After(deadline) {
			t.Fatalf("the receiver does not say the disk is full (status %+v)", st)
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Logf("receiver with the disk full: %s", st.StoreError)
	time.Sleep(time.Second) // an acknowledgement on its way arrives
	before, acked := committed.Load(), r.n.rcv.Acknowledged()
	time.Sleep(3 * time.Second)
	if n := committed.Load() - before; n != 0 {
		t.Errorf("%d commits acknowledged with the disk full", n)
	}
	if got := r.n.rcv.Acknowledged(); got != acked {
		t.Errorf("the receiver acknowledged %v, then %v, with the disk full", acked, got)
	}
	// At most a second's WAL went in after the disk filled. Without the
	// check, the store went on until it needed a segment it could not
	// make, two segments on (the spare was ready): 41,536 commits here.
	if seg := pgdata.LSN(r.n.store.SegmentSize()); acked-atFill >= seg {
		t.Errorf("the receiver acknowledged WAL from %v to %v after the disk filled: a segment or more", atFill, acked)
	}

	r.faulty.SetRule(nil)
	for deadline := time.Now().Add(2 * time.Minute); committed.Load() < before+50; time.Sleep(100 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("commits did not go on once space was back: %d after %d (receiver: %+v)", committed.Load(), before, r.n.rcv.Status())
		}
	}
	close(stopBG)
	if err := <-bgDone; err != nil {
		t.Fatalf("commits: %v", err)
	}
	t.Logf("%d commits acknowledged, %d when the disk was full", committed.Load()+50, before+50)
	st = r.n.rcv.Status()
	if st.StoreError != "" {
		t.Errorf("receiver status still says the store fails: %q", st.StoreError)
	}
	if st.StoreErrors == 0 {
		t.Error("receiver status counts no WAL store errors for the full disk")
	}
	r.checkPages(ctx, t, "after a full disk")
}

// TestWalReceiverStatusFollowsFsync: the receiver, a compute's only
// synchronous standby, tells it of a flush only once the WAL store's
// fsync has returned. With the store's fsyncs held no commit returns, and
// the compute sees the page server's flush below its own; once they go
// on, every commit returns. One client exercises the fsync on the
// receiving goroutine (nothing more arrives meanwhile); several
// committing at once, the flusher goroutine woken while more WAL is
// pending.
func TestWalReceiverStatusFollowsFsync(t *testing.T) {
	for _, clients := range []int{1, 8} {
		t.Run(fmt.Sprintf("clients=%d", clients), func(t *testing.T) {
			testWalReceiverStatusFollowsFsync(t, clients)
		})
	}
}

func testWalReceiverStatusFollowsFsync(t *testing.T, clients int) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	r := startStoreFailRun(ctx, t, "follows_fsync")
	r.commit(ctx, t, 0, 20)
	conns := make([]*pgx.Conn, clients)
	for i := range conns {
		conn, err := pgx.Connect(ctx, r.c.pg.ConnString("postgres"))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close(context.Background()) })
		conns[i] = conn
	}
	gate := vfs.NewGate(vfs.OpSync, func(name string) bool {
		return len(filepath.Base(name)) == pgdata.WALFileNameLen
	})
	t.Cleanup(gate.Release) // before the receiver stops
	r.faulty.SetRule(gate.Rule)

	done := make(chan error, clients)
	for i, conn := range conns {
		go func() {
			_, err := conn.Exec(context.Background(), "INSERT INTO follows_fsync VALUES ($1, 'held')", 100+i)
			done <- err
		}()
	}
	select {
	case err := <-done:
		t.Fatalf("a commit returned (err=%v) while the page server could not fsync its WAL", err)
	case <-time.After(3 * time.Second):
	}
	select {
	case <-gate.Held():
	case <-ctx.Done():
		t.Fatal("the receiver never fsynced the commits' WAL")
	}
	held, err := pgtest.StandbyFlushBehind(ctx, r.conn, walreceiver.ReplicationSlot)
	if err != nil {
		t.Fatal(err)
	}
	if !held {
		t.Error("the compute sees the page server flushed up to its own flush LSN while its fsync is held")
	}
	gate.Release()
	for range clients {
		select {
		case err := <-done:
			if err != nil {
				t.Fatal(err)
			}
		case <-time.After(30 * time.Second):
			t.Fatalf("a commit did not return 30 s after the fsyncs went on (receiver: %+v)", r.n.rcv.Status())
		}
	}
	var n int
	if err := r.conn.QueryRow(ctx, "SELECT count(*) FROM follows_fsync WHERE pad = 'held'").Scan(&n); err != nil || n != clients {
		t.Fatalf("held rows = %d, %v; want %d", n, err, clients)
	}
}
