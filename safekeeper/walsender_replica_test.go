package safekeeper

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/zenithdb/zenith/pgwire"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// TestWalsenderServesReplica: a read replica's walreceiver (stock
// PostgreSQL) connects as another user than the page server, asks from
// the start of a segment in which the safekeeper's WAL begins later (a
// branch's first term starts mid-segment), and reports its own flush
// position. It gets the WAL from where it begins, and its reports are
// never taken for the page server's consistent LSN (WAL below that may
// be removed). Before the timeline has a system id, IDENTIFY_SYSTEM
// tells it to wait instead of naming system 0.
func TestWalsenderServesReplica(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w := makeRealWAL(t)
	if w.from.SegmentOffset(pgdata.WALSegmentSize) == 0 {
		t.Fatalf("the test WAL begins at %s, a segment start: want one inside a segment", w.from)
	}
	ts := newTestSet(t, 3)
	for i := range ts.nodes {
		tl := openTerm1At(t, ts, i, w.from)
		appendSynced(t, tl, 1, w.from, w.slice(w.from, w.to))
		ts.start(i)
	}
	waitFor(t, 10*time.Second, "the commit LSN", func() bool { return ts.tl(0).State().CommitLSN == w.to })

	connStr := fmt.Sprintf("host=127.0.0.1 port=%s user=replica application_name=replica_ro options='-c tenant_id=%s -c timeline_id=%s'",
		portOf(ts.nodes[0].pgAddr), ts.tenant, ts.timeline)
	repl, err := pgwire.ConnectReplication(ctx, connStr)
	if err != nil {
		t.Fatal(err)
	}
	defer repl.Close(context.Background())
	if _, err := repl.IdentifySystem(ctx); err == nil || !strings.Contains(err.Error(), "no WAL on this safekeeper yet") {
		t.Errorf("IDENTIFY_SYSTEM of a timeline without a system id: %v, want an error saying it has no WAL yet", err)
	}
	if err := ts.tl(0).SetSystem(42, pgdata.WALSegmentSize); err != nil {
		t.Fatal(err)
	}
	sys, err := repl.IdentifySystem(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sys.SystemID != "42" {
		t.Errorf("IDENTIFY_SYSTEM system id %s, want 42", sys.SystemID)
	}
	segStart := w.from - pgdata.LSN(w.from.SegmentOffset(pgdata.WALSegmentSize))
	if err := repl.StartReplication(ctx, "", segStart, 1); err != nil {
		t.Fatalf("START_REPLICATION at %s, the start of the segment where the WAL begins (%s): %v", segStart, w.from, err)
	}
	got := receiveUntil(t, ctx, repl, w.from, w.to)
	if string(got) != string(w.slice(w.from, w.to)) {
		t.Fatal("the replica received other WAL than the safekeeper's")
	}
	if err := repl.SendStatus(ctx, pgwire.StandbyStatus{Written: w.to, Flushed: w.to, Applied: w.to, ReplyRequested: true}); err != nil {
		t.Fatal(err)
	}
	// The reply (a keepalive) comes after the status was handled.
	time.Sleep(time.Second)
	if got := ts.tl(0).State().PageserverLSN; got != 0 {
		t.Errorf("after the replica reported %s, the page server's LSN is %s, want it unset", w.to, got)
	}
}
