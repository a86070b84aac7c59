package safekeeper

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/vfs"
)

func TestControlFileRoundTripAndCorruption(t *testing.T) {
	dir := t.TempDir()
	want := &Control{SystemID: 7, SegmentSize: pgdata.WALSegmentSize, Term: 3,
		History: History{{1, 0x1000}, {3, 0x2000}}, BeginLSN: 0x1000, FlushLSN: 0x3000,
		CommitLSN: 0x2800, PageserverLSN: 0x2000, ComputeTerm: 3, Compute: "host=x port=1"}
	if err := writeControl(dir, want); err != nil {
		t.Fatal(err)
	}
	got, err := readControl(dir)
	if err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("read back %+v, want %+v", got, want)
	}
	good, err := os.ReadFile(filepath.Join(dir, ControlFileName))
	if err != nil {
		t.Fatal(err)
	}
	// Every flipped byte and every truncation is detected.
	for i := 0; i < len(good); i++ {
		b := bytes.Clone(good)
		b[i] ^= 0x40
		if _, err := decodeControl(b); err == nil {
			t.Fatalf("byte %d flipped: decoded without error", i)
		}
	}
	for n := 0; n < len(good); n++ {
		if _, err := decodeControl(good[:n]); err == nil {
			t.Fatalf("truncated to %d bytes: decoded without error", n)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, ControlFileName), good[:len(good)/2], 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = readControl(dir)
	var ce *CorruptionError
	if !errors.As(err, &ce) {
		t.Fatalf("torn control file: got %v, want a CorruptionError", err)
	}
	if _, err := openTimeline(vfs.Default, dir, id.TenantID{}, id.TimelineID{}, zerolog.Nop()); !errors.As(err, &ce) {
		t.Fatalf("opening a timeline with a torn control file: got %v, want a CorruptionError (never a reset)", err)
	}
}

func TestParseHistory(t *testing.T) {
	for _, tt := range []struct {
		in   string
		want History
		bad  bool
	}{
		{"", nil, false},
		{"1@0/0", History{{1, 0}}, false},
		{"1@0/16B9188,4@1/0", History{{1, 0x16B9188}, {4, 1 << 32}}, false},
		{"2@0/10,1@0/20", nil, true},
		{"1@0/20,2@0/10", nil, true},
		{"0@0/0", nil, true},
		{"1-0/0", nil, true},
	} {
		got, err := ParseHistory(tt.in)
		if (err != nil) != tt.bad || !reflect.DeepEqual(got, tt.want) {
			t.Errorf("ParseHistory(%q) = %v, %v; want %v, error %v", tt.in, got, err, tt.want, tt.bad)
		}
		if err == nil && got.String() != tt.in {
			t.Errorf("History(%q).String() = %q", tt.in, got.String())
		}
	}
}

func TestDivergence(t *testing.T) {
	for _, tt := range []struct {
		name     string
		own      History
		ownEnd   pgdata.LSN
		donor    History
		donorEnd pgdata.LSN
		want     pgdata.LSN
	}{
		{"same history, own behind", History{{1, 100}}, 150, History{{1, 100}}, 200, 150},
		{"same history, own ahead", History{{1, 100}}, 250, History{{1, 100}}, 200, 200},
		{"own has an old-term tail", History{{1, 100}}, 300, History{{1, 100}, {2, 200}}, 400, 200},
		{"own term unknown to donor", History{{1, 100}, {2, 250}}, 300, History{{1, 100}, {3, 200}}, 400, 200},
		{"own empty", nil, 0, History{{1, 100}}, 400, 0},
		{"no common term", History{{2, 100}}, 300, History{{3, 100}}, 400, 100},
	} {
		if got := divergence(tt.own, tt.ownEnd, tt.donor, tt.donorEnd); got != tt.want {
			t.Errorf("%s: divergence = %d, want %d", tt.name, got, tt.want)
		}
	}
}

// walBytes returns n bytes of a recognisable pattern for WAL at lsn.
func walBytes(lsn pgdata.LSN, n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte((uint64(lsn) + uint64(i)) * 31 >> 3)
	}
	return b
}

func newTestTimeline(t *testing.T, dir string) *Timeline {
	t.Helper()
	tl, err := createTimeline(vfs.Default, dir, id.NewTenantID(), id.NewTimelineID(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return tl
}

// joinTerm votes for term and enters it at the end of the WAL, as an
// election with this safekeeper as the donor does.
func joinTerm(t *testing.T, tl *Timeline, term uint64) {
	t.Helper()
	if ok, _, err := tl.Vote(term); err != nil || !ok {
		t.Fatalf("vote %d: %v %v", term, ok, err)
	}
	st := tl.State()
	if _, err := tl.prepareElected(term, st.FlushLSN, st.History, st.BeginLSN); err != nil {
		t.Fatal(err)
	}
	if err := tl.finishElected(term, st.FlushLSN, st.History); err != nil {
		t.Fatal(err)
	}
}

// newSpanTimeline makes an empty timeline in dir with the span sample's
// 1 MiB segments.
func newSpanTimeline(t *testing.T, dir string) *Timeline {
	t.Helper()
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := writeControl(dir, &Control{SegmentSize: walTestSegSize}); err != nil {
		t.Fatal(err)
	}
	tl, err := openTimeline(vfs.Default, dir, id.NewTenantID(), id.NewTimelineID(), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	return tl
}

// reopen opens tl's directory again without closing tl, as after kill -9
// (the page cache keeps what tl wrote), then closes tl's files.
func reopen(t *testing.T, tl *Timeline) *Timeline {
	t.Helper()
	tl2, err := openTimeline(vfs.Default, tl.dir, tl.Tenant, tl.Timeline, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	tl.wal.closeAll()
	return tl2
}

// TestWALWriteTruncateReopen writes real WAL across segment files, and
// reopens the timeline as after kill -9: the flush LSN is the end of the
// last complete record, also when the flush LSN before lay inside a record
// (the control file follows it down), and a truncation whose control file
// was never written is completed.
func TestWALWriteTruncateReopen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tl")
	tl := newSpanTimeline(t, dir)
	joinTerm(t, tl, 1)
	if err := tl.setCompute(1, spanStart, "host=compute"); err != nil {
		t.Fatal(err)
	}
	data := spanWAL(t, spanStart, spanEnd)
	mid := pgdata.LSN(0x800000 + 5000) // into segment 8
	if err := tl.AppendWAL(1, spanStart, data[:mid-spanStart]); err != nil {
		t.Fatal(err)
	}
	if err := tl.AppendWAL(1, mid, data[mid-spanStart:]); err != nil {
		t.Fatal(err)
	}
	if err := tl.AppendWAL(1, spanStart+10, data); err == nil {
		t.Fatal("a write that is not at the end of the WAL was accepted")
	}
	if got := tl.FlushLSN(); got != spanStart {
		t.Fatalf("flush LSN before Sync = %s, want %s (nothing fsynced yet)", got, spanStart)
	}
	flush, err := tl.Sync()
	if err != nil || flush != spanEnd {
		t.Fatalf("Sync = %s, %v; want %s", flush, err, spanEnd)
	}
	for seg := uint64(7); seg <= 9; seg++ {
		if _, err := os.Stat(filepath.Join(dir, pgdata.WALFileName(1, seg, walTestSegSize))); err != nil {
			t.Fatalf("segment file: %v", err)
		}
	}
	got := make([]byte, len(data))
	if err := tl.ReadWAL(got, spanStart); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back: %v, equal %v", err, bytes.Equal(got, data))
	}
	if err := tl.ReadWAL(got, spanStart+1); err == nil {
		t.Fatal("a read beyond the flush LSN succeeded")
	}

	// Reopen without Close: the WAL says where it ends, even though the
	// control file was written earlier.
	tl2 := reopen(t, tl)
	st := tl2.State()
	if st.FlushLSN != spanEnd || st.BeginLSN != spanStart || st.Term != 1 || st.History.String() != "1@0/0" {
		t.Fatalf("reopened state %+v", st)
	}

	// The control file records the flush LSN; then a truncation across a
	// segment boundary cuts the files and crashes before the control file.
	tl2.mu.Lock()
	err = tl2.persistLocked()
	tl2.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	cut := spanSwitch
	if err := tl2.wal.truncate(cut); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, pgdata.WALFileName(1, 9, walTestSegSize))); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("segment after the truncation point still exists: %v", err)
	}
	tl3 := reopen(t, tl2)
	if got := tl3.FlushLSN(); got != cut {
		t.Fatalf("flush LSN after truncation and reopen = %s, want %s", got, cut)
	}
	got = make([]byte, cut-spanStart)
	if err := tl3.ReadWAL(got, spanStart); err != nil || !bytes.Equal(got, data[:cut-spanStart]) {
		t.Fatalf("read after truncation: %v", err)
	}
	// The interrupted truncation (files cut, control file not yet
	// written) was completed: the control file agrees now.
	ctl, err := readControl(dir)
	if err != nil || ctl.FlushLSN != cut {
		t.Fatalf("control file after reopen: %+v, %v; want flush %s", ctl, err, cut)
	}

	// The WAL goes on into the last record and stops inside it, flushed
	// and committed there (a byte position), and recorded so in the
	// control file: the reopened timeline ends where that record begins,
	// and the control file follows.
	inside := spanLast + 3000
	if err := tl3.AppendWAL(1, cut, data[cut-spanStart:inside-spanStart]); err != nil {
		t.Fatal(err)
	}
	if _, err := tl3.Sync(); err != nil {
		t.Fatal(err)
	}
	if err := tl3.AdvanceCommit(inside); err != nil {
		t.Fatal(err)
	}
	tl3.mu.Lock()
	err = tl3.persistLocked()
	tl3.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	tl4 := reopen(t, tl3)
	defer tl4.Close()
	if st := tl4.State(); st.FlushLSN != spanLast || st.CommitLSN != spanLast || st.History.String() != "1@0/0" {
		t.Fatalf("reopened with the flush LSN inside a record: flush %s, commit %s, history %s; want %s, %s and 1@0/0", st.FlushLSN, st.CommitLSN, st.History, spanLast, spanLast)
	}
	if ctl, err := readControl(dir); err != nil || ctl.FlushLSN != spanLast {
		t.Fatalf("control file after reopen: %+v, %v; want flush %s", ctl, err, spanLast)
	}
	// The WAL written on from there is the WAL found again.
	if err := tl4.AppendWAL(1, spanLast, data[spanLast-spanStart:]); err != nil {
		t.Fatal(err)
	}
	if _, err := tl4.Sync(); err != nil {
		t.Fatal(err)
	}
	got = make([]byte, len(data))
	if err := tl4.ReadWAL(got, spanStart); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back after writing on: %v", err)
	}
}

func TestWALGapIsCorruption(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tl")
	tl := newTestTimeline(t, dir)
	joinTerm(t, tl, 1)
	if err := tl.setCompute(1, 100, "x"); err != nil {
		t.Fatal(err)
	}
	n := 2*pgdata.WALSegmentSize + 100
	if err := tl.AppendWAL(1, 100, make([]byte, n)); err != nil {
		t.Fatal(err)
	}
	if err := tl.Close(); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(dir, "000000010000000000000001")); err != nil {
		t.Fatal(err)
	}
	var ce *CorruptionError
	if _, err := openTimeline(vfs.Default, dir, tl.Tenant, tl.Timeline, zerolog.Nop()); !errors.As(err, &ce) {
		t.Fatalf("missing middle segment: got %v, want a CorruptionError", err)
	}
}

func TestTermFencing(t *testing.T) {
	tl := newTestTimeline(t, filepath.Join(t.TempDir(), "tl"))
	defer tl.Close()
	joinTerm(t, tl, 2)
	if err := tl.setCompute(2, 100, "x"); err != nil {
		t.Fatal(err)
	}
	if ok, _, _ := tl.Vote(2); ok {
		t.Fatal("a second vote for the same term was granted")
	}
	if ok, _, _ := tl.Vote(1); ok {
		t.Fatal("a vote for a lower term was granted")
	}
	if ok, _, err := tl.Vote(3); !ok || err != nil {
		t.Fatalf("vote for a higher term: %v %v", ok, err)
	}
	if err := tl.AppendWAL(2, 100, []byte{1}); !errors.Is(err, ErrTermChanged) {
		t.Fatalf("WAL from term 2 after a vote for 3: got %v, want ErrTermChanged", err)
	}
	if err := tl.setCompute(2, 100, "x"); !errors.Is(err, ErrTermChanged) {
		t.Fatalf("a compute of term 2 after a vote for 3: got %v, want ErrTermChanged", err)
	}
	if err := tl.setCompute(3, 100, "x"); !errors.Is(err, ErrTermChanged) {
		t.Fatalf("a compute of term 3 before the election finished: got %v, want ErrTermChanged", err)
	}
	if _, _, ok := tl.computeToStream(); ok {
		t.Fatal("still streaming from the old term's compute")
	}
}

// TestRemoveOldWAL: whole segments below both the page server's LSN and
// the peers' horizon go; the segment holding either stays, and so does
// the last one; and a segment becomes the first only once the rest of the
// record that runs into it is durable, as a restart decodes from there.
func TestRemoveOldWAL(t *testing.T) {
	newSpan := func(t *testing.T, end pgdata.LSN) (*Timeline, func(n uint64) bool) {
		dir := filepath.Join(t.TempDir(), "tl")
		tl := newSpanTimeline(t, dir)
		t.Cleanup(func() { tl.Close() })
		joinTerm(t, tl, 1)
		if err := tl.setCompute(1, spanStart, "x"); err != nil {
			t.Fatal(err)
		}
		if err := tl.AppendWAL(1, spanStart, spanWAL(t, spanStart, end)); err != nil {
			t.Fatal(err)
		}
		if _, err := tl.Sync(); err != nil {
			t.Fatal(err)
		}
		return tl, func(n uint64) bool {
			_, err := os.Stat(filepath.Join(dir, pgdata.WALFileName(1, n, walTestSegSize)))
			return err == nil
		}
	}
	tl, exists := newSpan(t, spanEnd)
	for _, tt := range []struct {
		pageserver, horizon pgdata.LSN
		gone                []uint64 // segments removed by now
		kept                []uint64
	}{
		{0, spanEnd, nil, []uint64{7, 8, 9}},              // page server has nothing
		{spanLast, 0x7FF000, nil, []uint64{7, 8, 9}},      // a peer needs segment 7
		{spanLast, 0x800005, []uint64{7}, []uint64{8, 9}}, // a peer needs segment 8
		{spanEnd, 0xA00000, []uint64{7, 8}, []uint64{9}},  // the last segment always stays
		{0xA00000, 0xA00000, []uint64{7, 8}, []uint64{9}}, // whatever they say
	} {
		if _, err := tl.SetPageserverLSN(0, tt.pageserver); err != nil {
			t.Fatal(err)
		}
		if err := tl.RemoveOldWAL(tt.horizon); err != nil {
			t.Fatal(err)
		}
		for _, n := range tt.gone {
			if exists(n) {
				t.Errorf("page server %s, horizon %s: segment %d still exists", tt.pageserver, tt.horizon, n)
			}
		}
		for _, n := range tt.kept {
			if !exists(n) {
				t.Errorf("page server %s, horizon %s: segment %d was removed", tt.pageserver, tt.horizon, n)
			}
		}
	}
	if got := tl.State().BeginLSN; got != 0x900000 {
		t.Errorf("begin LSN after removal = %s, want 0/900000", got)
	}
	tl2 := reopen(t, tl)
	defer tl2.Close()
	if st := tl2.State(); st.BeginLSN != 0x900000 || st.FlushLSN != spanEnd {
		t.Errorf("reopened after the removal: WAL [%s, %s), want [0/900000, %s)", st.BeginLSN, st.FlushLSN, spanEnd)
	}

	// The WAL ends inside the 100 KB record that runs from segment 7 into
	// 8: its rest is not all here, so segment 7 stays.
	inside := pgdata.LSN(0x805000)
	tl3, exists3 := newSpan(t, inside)
	if _, err := tl3.SetPageserverLSN(0, inside); err != nil {
		t.Fatal(err)
	}
	if err := tl3.RemoveOldWAL(inside); err != nil {
		t.Fatal(err)
	}
	if !exists3(7) || tl3.State().BeginLSN != spanStart {
		t.Errorf("the WAL ends inside the record that runs into segment 8: segment 7 exists %v, begin %s; want it kept and %s", exists3(7), tl3.State().BeginLSN, spanStart)
	}
}

// TestChangedWakesOnlyForSendableWAL: a flush alone, which changes nothing
// a walsender may send, does not close Changed; a commit LSN raised, a
// vote, or a flush up to a commit LSN that was above it does.
func TestChangedWakesOnlyForSendableWAL(t *testing.T) {
	tl := newTestTimeline(t, filepath.Join(t.TempDir(), "tl"))
	joinTerm(t, tl, 1)
	closed := func(c <-chan struct{}) bool {
		select {
		case <-c:
			return true
		default:
			return false
		}
	}
	end := tl.FlushLSN()
	for _, step := range []struct {
		name string
		do   func() error
		want bool
	}{
		{"WAL written and fsynced", func() error {
			if err := tl.AppendWAL(1, end, walBytes(end, 100)); err != nil {
				return err
			}
			end += 100
			_, err := tl.Sync()
			return err
		}, false},
		{"an fsync with nothing written", func() error { _, err := tl.Sync(); return err }, false},
		{"the commit LSN raised", func() error { return tl.AdvanceCommit(end) }, true},
		{"the commit LSN raised to where it is", func() error { return tl.AdvanceCommit(end) }, false},
		{"more WAL fsynced", func() error {
			if err := tl.AppendWAL(1, end, walBytes(end, 50)); err != nil {
				return err
			}
			end += 50
			_, err := tl.Sync()
			return err
		}, false},
		{"a commit LSN above the flush LSN, then the fsync that reaches it", func() error {
			tl.mu.Lock()
			tl.ctl.CommitLSN = end + 10
			tl.mu.Unlock()
			if err := tl.AppendWAL(1, end, walBytes(end, 10)); err != nil {
				return err
			}
			end += 10
			_, err := tl.Sync()
			return err
		}, true},
		{"a vote", func() error { _, _, err := tl.Vote(2); return err }, true},
	} {
		changed := tl.Changed()
		if err := step.do(); err != nil {
			t.Fatalf("%s: %v", step.name, err)
		}
		if got := closed(changed); got != step.want {
			t.Errorf("%s: Changed closed %v, want %v", step.name, got, step.want)
		}
	}
}
