package safekeeper

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/zenithdb/zenith/pgwire"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// pageserverReports connects to node i as a page server of attach
// generation gen (0: none named) streaming from start, and sends one
// standby status update whose flush position is flushed.
func pageserverReports(t *testing.T, ctx context.Context, ts *testSet, i int, gen uint32, start, flushed pgdata.LSN) {
	t.Helper()
	opt := ""
	if gen > 0 {
		opt = fmt.Sprintf(" -c %s=%d", GenerationParam, gen)
	}
	connStr := fmt.Sprintf("host=127.0.0.1 port=%s user=pageserver options='-c tenant_id=%s -c timeline_id=%s%s'",
		portOf(ts.nodes[i].pgAddr), ts.tenant, ts.timeline, opt)
	repl, err := pgwire.ConnectReplication(ctx, connStr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { repl.Close(context.Background()) })
	if err := repl.StartReplication(ctx, "pageserver", start, 1); err != nil {
		t.Fatalf("generation %d: %v", gen, err)
	}
	if err := repl.SendStatus(ctx, pgwire.StandbyStatus{Written: flushed, Flushed: flushed, Applied: flushed}); err != nil {
		t.Fatal(err)
	}
}

// TestStalePageserverRemovesNoWAL: the page server that holds the tenant
// now (generation 2) has made the timeline durable up to segment 1; a
// stale one (generation 1, whose uploads are fenced) reports a flush
// position near the end of the WAL. The safekeepers must keep segment 1,
// which the current page server streams from after a restart, whichever
// safekeeper the stale one reports to, and after the safekeepers restart.
// Before generations were part of the report, the highest LSN won: every
// safekeeper removed segment 1.
func TestStalePageserverRemovesNoWAL(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Real WAL over three segments: the safekeepers restart, and find
	// the end of their WAL by decoding it. seg is the first boundary.
	w := makeRealWAL(t,
		"SELECT pg_logical_emit_message(false, 'zenith', repeat('m', 1000000)) FROM generate_series(1, 30)",
		"CREATE TABLE t (n int)", "INSERT INTO t VALUES (1)")
	from, end := w.from, w.to
	seg := from - pgdata.LSN(from.SegmentOffset(pgdata.WALSegmentSize)) + pgdata.WALSegmentSize
	if end <= seg+pgdata.WALSegmentSize {
		t.Fatalf("the WAL [%s, %s) does not reach a third segment", from, end)
	}
	ts := newTestSet(t, 3)
	for i := range ts.nodes {
		tl := openTerm1At(t, ts, i, from)
		appendSynced(t, tl, 1, from, w.slice(from, end))
		ts.start(i)
	}
	for i := range ts.nodes {
		waitFor(t, 30*time.Second, "the commit LSN", func() bool { return ts.tl(i).State().CommitLSN == end })
	}

	current := seg + 5
	pageserverReports(t, ctx, ts, 0, 2, from, current)
	for i := range ts.nodes {
		waitFor(t, 30*time.Second, fmt.Sprintf("safekeeper %d to remove segment 0 after generation 2's report", i+1), func() bool {
			st := ts.tl(i).State()
			return st.PageserverGeneration == 2 && st.PageserverLSN == current && st.BeginLSN == seg
		})
	}

	// check waits until node i has taken or ignored the stale report and
	// then wants the current page server's LSN and WAL still there.
	check := func(i int, when string) {
		t.Helper()
		waitFor(t, 30*time.Second, "the stale report to be handled", func() bool {
			st := ts.tl(i).State()
			return st.staleReports > 0 || st.PageserverLSN != current
		})
		// Give the peers' polls (every 50 ms) time to spread whatever
		// was taken.
		time.Sleep(500 * time.Millisecond)
		for j := range ts.nodes {
			st := ts.tl(j).State()
			if st.PageserverLSN != current || st.PageserverGeneration != 2 || st.BeginLSN != seg {
				t.Fatalf("%s: safekeeper %d has page server LSN %s of generation %d and WAL from %s; want %s of generation 2 and WAL from %s (generation 2 needs it)",
					when, j+1, st.PageserverLSN, st.PageserverGeneration, st.BeginLSN, current, seg)
			}
		}
	}
	pageserverReports(t, ctx, ts, 1, 1, seg, end)
	check(1, "generation 1 reporting to a peer")

	for i := range ts.nodes {
		ts.stop(i)
	}
	for i := range ts.nodes {
		ts.start(i)
	}
	// A page server without generations is older than any.
	pageserverReports(t, ctx, ts, 2, 0, seg, end)
	check(2, "after a restart, a page server without generations reporting")
	pageserverReports(t, ctx, ts, 0, 1, seg, end)
	check(0, "after a restart, generation 1 reporting")

	// The next generation's report moves the LSN again, even backwards
	// within the WAL kept: it is the page server that holds the tenant.
	pageserverReports(t, ctx, ts, 0, 3, seg, seg+1)
	for i := range ts.nodes {
		waitFor(t, 30*time.Second, fmt.Sprintf("safekeeper %d to learn generation 3's report", i+1), func() bool {
			st := ts.tl(i).State()
			return st.PageserverGeneration == 3 && st.PageserverLSN == seg+1
		})
	}
}

// TestAnnouncedGenerationStopsStaleReports: the control plane announces
// generation 2 (PUT /v1/tenant/<id>/pageserver_generation/2, to one
// safekeeper: the others learn it from their peers) before the page
// server of generation 2 has reported anything. A stale page server of
// generation 1 then reports a flush position near the end of the WAL: no
// safekeeper removes any, until generation 2 reports its own position.
// Without the announcement, generation 1's report removed segment 1.
func TestAnnouncedGenerationStopsStaleReports(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	seg := pgdata.LSN(pgdata.WALSegmentSize)
	from, end := pgdata.LSN(40), 2*seg+100
	ts := newTestSet(t, 3)
	for i := range ts.nodes {
		tl := openTerm1At(t, ts, i, from)
		appendSynced(t, tl, 1, from, make([]byte, end-from))
		ts.start(i)
	}
	for i := range ts.nodes {
		waitFor(t, 30*time.Second, "the commit LSN", func() bool { return ts.tl(i).State().CommitLSN == end })
	}
	pageserverReports(t, ctx, ts, 0, 1, from, seg+5)
	for i := range ts.nodes {
		waitFor(t, 30*time.Second, fmt.Sprintf("safekeeper %d to remove segment 0 after generation 1's report", i+1), func() bool {
			st := ts.tl(i).State()
			return st.PageserverGeneration == 1 && st.BeginLSN == seg
		})
	}

	for _, bad := range []string{"0", "x", "4294967296"} {
		if code := announce(t, ctx, ts.nodes[0].httpAddr, ts.tenant.String(), bad); code != http.StatusBadRequest {
			t.Errorf("announcing generation %q: HTTP %d, want 400", bad, code)
		}
	}
	if code := announce(t, ctx, ts.nodes[0].httpAddr, ts.tenant.String(), "2"); code != http.StatusOK {
		t.Fatalf("announcing generation 2: HTTP %d", code)
	}
	for i := range ts.nodes {
		waitFor(t, 30*time.Second, fmt.Sprintf("safekeeper %d to know generation 2", i+1), func() bool {
			st := ts.tl(i).State()
			return st.PageserverGeneration == 2 && st.PageserverLSN == 0
		})
	}
	pageserverReports(t, ctx, ts, 1, 1, seg, end)
	waitFor(t, 30*time.Second, "the stale report to be ignored", func() bool { return ts.tl(1).State().staleReports > 0 })
	time.Sleep(500 * time.Millisecond) // the peers' polls, every 50 ms
	for i := range ts.nodes {
		if st := ts.tl(i).State(); st.BeginLSN != seg || st.PageserverGeneration != 2 {
			t.Fatalf("after generation 1's report: safekeeper %d has WAL from %s, generation %d; want WAL from %s kept for generation 2", i+1, st.BeginLSN, st.PageserverGeneration, seg)
		}
	}
	pageserverReports(t, ctx, ts, 2, 2, seg, seg+5)
	for i := range ts.nodes {
		waitFor(t, 30*time.Second, fmt.Sprintf("safekeeper %d to take generation 2's report", i+1), func() bool {
			return ts.tl(i).State().PageserverLSN == seg+5
		})
	}
}

// announce PUTs generation gen of tenant to the safekeeper at addr and
// returns the HTTP status.
func announce(t *testing.T, ctx context.Context, addr, tenant, gen string) int {
	t.Helper()
	req, err := http.NewRequestWithContext(ctx, http.MethodPut, "http://"+addr+"/v1/tenant/"+tenant+"/pageserver_generation/"+gen, nil)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
