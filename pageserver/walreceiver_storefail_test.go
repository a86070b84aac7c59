package pageserver

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/zenithdb/zenith/repo/vfs"
)

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
	c := newRcvCompute(t)
	faulty := vfs.NewFaulty(vfs.Default)
	c.fs = faulty
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
	if err := c.pg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	if err := n.rcv.SetSource(c.pg.ConnString("postgres")); err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	ran := make(chan error, 1)
	go func() { ran <- n.rcv.Run(runCtx) }()
	stopped := false // a commit failed: Run's end is reported there
	defer func() {
		stop()
		if err := <-ran; !stopped && !errors.Is(err, context.Canceled) {
			t.Errorf("Run: %v", err)
		}
	}()

	// The reported flush position never passes the store's synced end.
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
	defer func() { endWatch(); <-watched }()

	conn, err := pgx.Connect(ctx, c.pg.ConnString("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	exec(t, conn, "CREATE TABLE fsync_fail (id int PRIMARY KEY, pad text)")
	commit := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			cctx, done := context.WithTimeout(ctx, 2*time.Minute)
			_, err := conn.Exec(cctx, "INSERT INTO fsync_fail VALUES ($1, repeat('x', 500))", i)
			done()
			if err != nil {
				stopped = true
				select {
				case rerr := <-ran:
					ran <- rerr // for the deferred wait
					t.Fatalf("commit %d: %v; the receiver stopped: %v", i, err, rerr)
				default:
				}
				t.Fatalf("commit %d: %v (receiver: %+v)", i, err, n.rcv.Status())
			}
		}
	}
	commit(0, 50)

	// The next sync of a segment file fails, once.
	faulty.SetRule(vfs.FailOnce(vfs.OpSync, func(name string) bool {
		return strings.HasPrefix(filepath.Base(name), "0000000")
	}))
	commit(50, 250)
	faulty.SetRule(nil)

	st := n.rcv.Status()
	if st.StoreErrors != 1 {
		t.Errorf("receiver status counts %d WAL store errors, want 1 (the injected fsync failure)", st.StoreErrors)
	}
	if st.StoreError != "" {
		t.Errorf("receiver status still says the store fails: %q", st.StoreError)
	}
	if v := overReported.Load(); v != nil {
		t.Errorf("the receiver reported WAL flushed that the store had not synced: %v", v)
	}
	exec(t, conn, "CHECKPOINT")
	end := queryLSN(ctx, t, conn, "SELECT pg_current_wal_lsn()")
	waitCtx, done := context.WithTimeout(ctx, 2*time.Minute)
	err = n.tl.WaitForLSN(waitCtx, end)
	done()
	if err != nil {
		t.Fatalf("the timeline did not reach the compute's %v: %v (receiver: %+v)", end, err, n.rcv.Status())
	}
	nblocks := comparePages(ctx, t, m, c.tenant, n.tl, conn, c.pg.DataDir(), "fsync_fail", end)
	t.Logf("after a failed fsync: %d pages equal the compute's at %v", nblocks, end)
}
