package safekeeper

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/pgwire"
	"github.com/zenithdb/zenith/repo/auth"
	"github.com/zenithdb/zenith/repo/pgcluster/pgtest"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// realWAL is WAL a real PostgreSQL wrote: bytes [from, to) and the record
// boundaries in it.
type realWAL struct {
	from, to pgdata.LSN
	bytes    []byte
	starts   []pgdata.LSN // start LSN of every record
	ends     []pgdata.LSN // end LSN of every record
}

func (w *realWAL) slice(a, b pgdata.LSN) []byte { return w.bytes[a-w.from : b-w.from] }

// boundary returns the end of a record about frac of the way in.
func (w *realWAL) boundary(frac float64) pgdata.LSN { return w.ends[int(float64(len(w.ends)-1)*frac)] }

// makeRealWAL runs statements (by default a small mixed workload) on a
// fresh PostgreSQL and returns the WAL they wrote.
func makeRealWAL(t *testing.T, statements ...string) *realWAL {
	t.Helper()
	if len(statements) == 0 {
		statements = []string{"CREATE TABLE t (n int, pad text)",
			"INSERT INTO t SELECT g, repeat('y', 300) FROM generate_series(1, 300) g",
			"UPDATE t SET n = n + 1 WHERE n % 3 = 0", "INSERT INTO t VALUES (0, 'last')"}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	pg := pgtest.Start(t, nil)
	conn := connect(t, ctx, pg)
	var s string
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&s); err != nil {
		t.Fatal(err)
	}
	from, err := pgdata.ParseLSN(s)
	if err != nil {
		t.Fatal(err)
	}
	for _, q := range statements {
		if _, err := conn.Exec(ctx, q); err != nil {
			t.Fatal(err)
		}
	}
	to := currentLSN(t, ctx, conn)
	w := &realWAL{from: from, to: to, bytes: readPGWAL(t, pg.DataDir(), from, to)}
	dec := pgdata.NewWALDecoder(from, pgdata.WALSegmentSize)
	dec.Feed(w.bytes)
	for {
		rec, err := dec.Next()
		if err != nil {
			break
		}
		if rec.EndLSN <= to {
			w.starts = append(w.starts, rec.LSN)
			w.ends = append(w.ends, rec.EndLSN)
		}
	}
	if len(w.ends) < 20 || w.ends[len(w.ends)-1] != to {
		t.Fatalf("decoded %d records in [%s, %s), last ending at %v", len(w.ends), from, to, w.ends)
	}
	return w
}

// beginAt makes an empty timeline's WAL start at lsn, as a compute's
// basebackup LSN would.
func beginAt(t *testing.T, tl *Timeline, lsn pgdata.LSN) {
	t.Helper()
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if err := tl.wal.truncate(lsn); err != nil {
		t.Fatal(err)
	}
	tl.flush = lsn
}

// openTerm1At opens node i's timeline of ts, joins term 1 and makes its
// WAL start at from.
func openTerm1At(t *testing.T, ts *testSet, i int, from pgdata.LSN) *Timeline {
	t.Helper()
	tl, err := ts.open(i).Timeline(ts.tenant, ts.timeline, true)
	if err != nil {
		t.Fatal(err)
	}
	joinTerm(t, tl, 1)
	beginAt(t, tl, from)
	return tl
}

func appendSynced(t *testing.T, tl *Timeline, term uint64, lsn pgdata.LSN, b []byte) {
	t.Helper()
	if err := tl.AppendWAL(term, lsn, b); err != nil {
		t.Fatal(err)
	}
	if _, err := tl.Sync(); err != nil {
		t.Fatal(err)
	}
}

// TestElectionTruncatesDivergentSuffixAndCopiesMissingWAL: two safekeepers
// hold a longer tail of term 1 that a third, elected in term 2 without
// them, does not have; the next election truncates it by the term
// history. Then the safekeepers that lag behind the most advanced one
// are brought to it by copying its WAL.
func TestElectionTruncatesDivergentSuffixAndCopiesMissingWAL(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w := makeRealWAL(t)
	m := w.boundary(0.4)
	ts := newTestSet(t, 3)
	tls := make([]*Timeline, 3)
	for i := range ts.nodes {
		sk := ts.open(i)
		tl, err := sk.Timeline(ts.tenant, ts.timeline, true)
		if err != nil {
			t.Fatal(err)
		}
		tls[i] = tl
		joinTerm(t, tl, 1)
		beginAt(t, tl, w.from)
		appendSynced(t, tl, 1, w.from, w.slice(w.from, m))
	}
	// Safekeeper 3 alone is elected in term 2 at m; 1 and 2 go on taking
	// term 1's WAL.
	joinTerm(t, tls[2], 2)
	for _, tl := range tls[:2] {
		appendSynced(t, tl, 1, m, w.slice(m, w.to))
	}
	for i := range ts.nodes {
		ts.start(i)
	}
	log := zerolog.New(zerolog.NewTestWriter(t))
	e, err := Elect(ctx, ts.addrs(), ts.tenant, ts.timeline, auth.ClientOptions{}, log)
	if err != nil {
		t.Fatal(err)
	}
	if e.Term != 3 || e.StartLSN != m || e.Donor != ts.nodes[2].pgAddr {
		t.Fatalf("election: term %d, start %s, donor %s; want term 3, start %s, donor %s", e.Term, e.StartLSN, e.Donor, m, ts.nodes[2].pgAddr)
	}
	wantHistory := fmt.Sprintf("1@0/0,2@%s,3@%s", m, m)
	for i := range ts.nodes {
		st := ts.tl(i).State()
		if st.FlushLSN != m || st.History.String() != wantHistory {
			t.Errorf("safekeeper %d after the election: flush %s history %s; want %s and %s", i+1, st.FlushLSN, st.History, m, wantHistory)
		}
		checkWAL(t, fmt.Sprint("safekeeper ", i+1), ts.tl(i), w.from, w.slice(w.from, m))
	}

	// Term 3's WAL reaches safekeeper 3 up to the middle of a record (the
	// compute died while sending it), safekeeper 1 partly and safekeeper 2
	// not at all; the next election starts at the end of the last complete
	// record and copies what the others lack.
	k := w.boundary(0.7)
	last := w.ends[len(w.ends)-2]
	appendSynced(t, ts.tl(2), 3, m, w.slice(m, last+10))
	appendSynced(t, ts.tl(0), 3, m, w.slice(m, k))
	e, err = Elect(ctx, ts.addrs(), ts.tenant, ts.timeline, auth.ClientOptions{}, log)
	if err != nil {
		t.Fatal(err)
	}
	if e.Term != 4 || e.StartLSN != last {
		t.Fatalf("election: term %d, start %s; want term 4, start %s (the end of the last complete record)", e.Term, e.StartLSN, last)
	}
	for i := range ts.nodes {
		if got := ts.tl(i).FlushLSN(); got != last {
			t.Errorf("safekeeper %d flush %s, want %s", i+1, got, last)
		}
		checkWAL(t, fmt.Sprint("safekeeper ", i+1), ts.tl(i), w.from, w.slice(w.from, last))
	}
}

// TestWalsenderServesOnlyUpToCommitLSN: a safekeeper holding WAL that its
// peers lack serves a replication client (the page server) only the WAL a
// quorum has, and records the client's flush position, which its peers
// then learn (before, only the safekeeper the page server streamed from
// ever removed old WAL).
func TestWalsenderServesOnlyUpToCommitLSN(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w := makeRealWAL(t)
	m := w.boundary(0.5)
	ts := newTestSet(t, 3)
	for i := range ts.nodes {
		tl := openTerm1At(t, ts, i, w.from)
		end := m
		if i == 0 {
			end = w.to
		}
		appendSynced(t, tl, 1, w.from, w.slice(w.from, end))
		ts.start(i)
	}
	waitFor(t, 10*time.Second, "the commit LSN", func() bool { return ts.tl(0).State().CommitLSN == m })

	connStr := fmt.Sprintf("host=127.0.0.1 port=%s user=pageserver options='-c tenant_id=%s -c timeline_id=%s'",
		portOf(ts.nodes[0].pgAddr), ts.tenant, ts.timeline)
	repl, err := pgwire.ConnectReplication(ctx, connStr)
	if err != nil {
		t.Fatal(err)
	}
	defer repl.Close(context.Background())
	sys, err := repl.IdentifySystem(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if sys.XLogPos != m {
		t.Fatalf("IDENTIFY_SYSTEM xlogpos %s, want the commit LSN %s", sys.XLogPos, m)
	}
	if err := repl.CreatePhysicalSlot(ctx, "pageserver"); err != nil {
		t.Fatal(err)
	}
	if err := repl.StartReplication(ctx, "pageserver", w.from, 1); err != nil {
		t.Fatal(err)
	}
	// Receive until no WAL has come for 2 s (keepalives keep coming).
	var got []byte
	idle := time.Now().Add(2 * time.Second)
	for {
		rctx, rcancel := context.WithDeadline(ctx, idle)
		msg, err := repl.Receive(rctx)
		rcancel()
		if errors.Is(err, context.DeadlineExceeded) && ctx.Err() == nil {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if x, ok := msg.(*pgwire.XLogData); ok {
			if x.Start != w.from+pgdata.LSN(len(got)) {
				t.Fatalf("XLogData at %s, want %s", x.Start, w.from+pgdata.LSN(len(got)))
			}
			got = append(got, x.Data...)
			idle = time.Now().Add(2 * time.Second)
		}
	}
	if end := w.from + pgdata.LSN(len(got)); end != m {
		t.Fatalf("received WAL up to %s; want exactly the commit LSN %s (the safekeeper has up to %s)", end, m, w.to)
	}
	if string(got) != string(w.slice(w.from, m)) {
		t.Fatal("received WAL differs from the compute's")
	}
	if err := repl.SendStatus(ctx, pgwire.StandbyStatus{Written: m, Flushed: m, Applied: m}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "the page server's LSN to be recorded", func() bool { return ts.tl(0).State().PageserverLSN == m })
	// The peers learn it too: they may remove WAL below it as well.
	for i := 1; i < 3; i++ {
		waitFor(t, 10*time.Second, fmt.Sprintf("safekeeper %d to learn the page server's LSN from its peer", i+1),
			func() bool { return ts.tl(i).State().PageserverLSN == m })
	}
}

func portOf(addr string) string {
	for i := len(addr) - 1; i >= 0; i-- {
		if addr[i] == ':' {
			return addr[i+1:]
		}
	}
	return addr
}

// TestRecordLSNAfterOldWALIsRemoved: once the segments below the page
// server's LSN are removed, a safekeeper's WAL begins at a segment
// boundary in the middle of a record. The end of the last complete record
// (where an election starts the next term) is still found, and an election
// starts there, truncating nothing. Before the fix RecordLSN decoded from
// the segment boundary, found no record, and answered the boundary itself:
// the election made it the term's start, truncated every safekeeper's WAL
// above it (committed transactions included), and the page server refused
// a basebackup there ("LSN is not the end of a WAL record").
func TestRecordLSNAfterOldWALIsRemoved(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	// Records of 1 MB cover the segment boundary, small ones follow.
	w := makeRealWAL(t,
		"SELECT pg_logical_emit_message(false, 'zenith', repeat('m', 1000000)) FROM generate_series(1, 14)",
		"CREATE TABLE t (n int)", "INSERT INTO t SELECT generate_series(1, 50)", "INSERT INTO t VALUES (0)")
	seg := w.to - pgdata.LSN(w.to.SegmentOffset(pgdata.WALSegmentSize))
	cross := -1
	for i := range w.starts {
		if w.starts[i] < seg && w.ends[i] > seg {
			cross = i
		}
	}
	if seg <= w.from || cross < 0 || cross+2 >= len(w.ends) {
		t.Fatalf("no record covers the segment boundary %s in the WAL [%s, %s)", seg, w.from, w.to)
	}
	// storeWAL makes a timeline hold w up to end, with the segments below
	// end removed: the WAL then begins at begin.
	storeWAL := func(t *testing.T, tl *Timeline, end, begin pgdata.LSN) {
		joinTerm(t, tl, 1)
		beginAt(t, tl, w.from)
		appendSynced(t, tl, 1, w.from, w.slice(w.from, end))
		if _, err := tl.SetPageserverLSN(0, end); err != nil {
			t.Fatal(err)
		}
		if err := tl.RemoveOldWAL(end); err != nil {
			t.Fatal(err)
		}
		if got := tl.State().BeginLSN; got != begin {
			t.Fatalf("WAL begins at %s after the removal, want %s", got, begin)
		}
	}

	crossEnd := w.ends[cross]
	for _, tt := range []struct {
		name  string
		end   pgdata.LSN // where the stored WAL ends
		begin pgdata.LSN // where it begins after the removal
		want  pgdata.LSN // 0: no record is known to end in it
	}{
		{"all of it", w.to, seg, w.to},
		{"up to the end of the record over the boundary", crossEnd, seg, crossEnd},
		{"into the record after it", crossEnd + 10, seg, crossEnd},
		{"into a later record", w.ends[cross+1] + 30, seg, w.ends[cross+1]},
		// The rest of the record over the boundary is not all here:
		// its segment cannot become the first (walFiles.removeBelow).
		{"inside the record over the boundary", seg + 5000, w.from, w.ends[cross-1]},
	} {
		t.Run(tt.name, func(t *testing.T) {
			tl := newTestTimeline(t, t.TempDir())
			defer tl.Close()
			storeWAL(t, tl, tt.end, tt.begin)
			got, err := tl.RecordLSN()
			switch {
			case tt.want == 0 && !errors.Is(err, pgdata.ErrNoRecordStart):
				t.Fatalf("RecordLSN = %s, %v; want an error: no record ends in the stored WAL [%s, %s)", got, err, seg, tt.end)
			case tt.want != 0 && (err != nil || got != tt.want):
				t.Fatalf("RecordLSN = %s, %v; want %s (WAL stored [%s, %s))", got, err, tt.want, seg, tt.end)
			}
		})
	}

	// The old segments are removed while it decodes (as CI once saw
	// under "zenith branch": "read of WAL outside the stored" WAL): it
	// starts again where the WAL begins now.
	t.Run("removed while it decodes", func(t *testing.T) {
		tl := newTestTimeline(t, t.TempDir())
		defer tl.Close()
		joinTerm(t, tl, 1)
		beginAt(t, tl, w.from)
		appendSynced(t, tl, 1, w.from, w.slice(w.from, w.to))
		if _, err := tl.SetPageserverLSN(0, w.to); err != nil {
			t.Fatal(err)
		}
		removed := false
		got, err := tl.recordLSN(func(b []byte, lsn pgdata.LSN) error {
			if !removed {
				removed = true
				if err := tl.RemoveOldWAL(w.to); err != nil {
					return err
				}
				if begin := tl.State().BeginLSN; begin <= lsn {
					t.Fatalf("removing the old WAL made it begin at %s, not above the read at %s", begin, lsn)
				}
			}
			return tl.ReadWAL(b, lsn)
		})
		if err != nil || got != w.to {
			t.Fatalf("RecordLSN with the old WAL removed under it = %s, %v; want %s", got, err, w.to)
		}
	})

	ts := newTestSet(t, 3)
	for i := range ts.nodes {
		tl, err := ts.open(i).Timeline(ts.tenant, ts.timeline, true)
		if err != nil {
			t.Fatal(err)
		}
		storeWAL(t, tl, w.to, seg)
		ts.start(i)
	}
	e, err := Elect(ctx, ts.addrs(), ts.tenant, ts.timeline, auth.ClientOptions{}, zerolog.New(zerolog.NewTestWriter(t)))
	if err != nil {
		t.Fatal(err)
	}
	if e.StartLSN != w.to {
		t.Fatalf("election starts term %d at %s, want %s (the end of the WAL, a record's end)", e.Term, e.StartLSN, w.to)
	}
	for i := range ts.nodes {
		if got := ts.tl(i).FlushLSN(); got != w.to {
			t.Errorf("safekeeper %d: flush LSN %s after the election, want %s", i+1, got, w.to)
		}
	}
}

// TestElectionAfterCrashMidRecord: two of three safekeepers hold WAL up
// to the middle of a record, flushed and committed there (byte
// positions), the third lags. One of the two is killed (kill -9) and
// opened again: its segment files are preallocated, so it finds its end by
// decoding, at the start of the record cut short, and its commit LSN
// follows. The next election still starts at the end of the last
// complete record a quorum held, every safekeeper ends there with the same
// history and WAL, and the one that was not restarted finds the same end
// when it is.
func TestElectionAfterCrashMidRecord(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	w := makeRealWAL(t)
	k := w.boundary(0.5)
	r := len(w.ends) - 1
	for r > 0 && w.ends[r]-w.starts[r] < 64 {
		r--
	}
	recStart, mid := w.ends[r-1], w.starts[r]+(w.ends[r]-w.starts[r])/2
	if recStart < k {
		t.Fatalf("no record of 64 bytes or more after %s in [%s, %s)", k, w.from, w.to)
	}
	ts := newTestSet(t, 3)
	for i := range ts.nodes {
		tl := openTerm1At(t, ts, i, w.from)
		end := mid
		if i == 2 {
			end = k
		}
		appendSynced(t, tl, 1, w.from, w.slice(w.from, end))
		ts.start(i)
	}
	waitFor(t, 10*time.Second, "the commit LSN inside the record", func() bool { return ts.tl(0).State().CommitLSN == mid })
	tl0 := ts.tl(0)
	tl0.mu.Lock()
	err := tl0.persistLocked() // the control file says flush and commit are inside the record
	tl0.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}

	ts.kill(0)
	ts.open(0)
	if st := ts.tl(0).State(); st.FlushLSN != recStart || st.CommitLSN != recStart || st.History.String() != "1@0/0" {
		t.Fatalf("reopened after kill -9 with the flush LSN %s inside a record: flush %s, commit %s, history %s; want %s, %s, 1@0/0",
			mid, st.FlushLSN, st.CommitLSN, st.History, recStart, recStart)
	}
	ts.start(0)

	e, err := Elect(ctx, ts.addrs(), ts.tenant, ts.timeline, auth.ClientOptions{}, zerolog.New(zerolog.NewTestWriter(t)))
	if err != nil {
		t.Fatal(err)
	}
	if e.StartLSN != recStart {
		t.Fatalf("election: term %d, start %s; want %s, the end of the last complete record", e.Term, e.StartLSN, recStart)
	}
	wantHistory := fmt.Sprintf("1@0/0,%d@%s", e.Term, recStart)
	for i := range ts.nodes {
		st := ts.tl(i).State()
		if st.FlushLSN != recStart || st.History.String() != wantHistory {
			t.Errorf("safekeeper %d after the election: flush %s, history %s; want %s and %s", i+1, st.FlushLSN, st.History, recStart, wantHistory)
		}
		checkWAL(t, fmt.Sprint("safekeeper ", i+1), ts.tl(i), w.from, w.slice(w.from, recStart))
	}
	ts.kill(1)
	ts.open(1)
	if st := ts.tl(1).State(); st.FlushLSN != recStart || st.History.String() != wantHistory {
		t.Errorf("safekeeper 2 reopened after the election cut its WAL: flush %s, history %s; want %s and %s", st.FlushLSN, st.History, recStart, wantHistory)
	}
}
