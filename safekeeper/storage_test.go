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
	if _, err := openTimeline(dir, id.TenantID{}, id.TimelineID{}, zerolog.Nop()); !errors.As(err, &ce) {
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
	tl, err := createTimeline(dir, id.NewTenantID(), id.NewTimelineID(), zerolog.Nop())
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

func TestWALWriteTruncateReopen(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tl")
	tl := newTestTimeline(t, dir)
	joinTerm(t, tl, 1)
	begin := pgdata.LSN(pgdata.WALSegmentSize - 1000) // crosses into segment 1
	if err := tl.setCompute(1, begin, "host=compute"); err != nil {
		t.Fatal(err)
	}
	data := walBytes(begin, 3000)
	if err := tl.AppendWAL(1, begin, data[:1500]); err != nil {
		t.Fatal(err)
	}
	if err := tl.AppendWAL(1, begin+1500, data[1500:]); err != nil {
		t.Fatal(err)
	}
	if err := tl.AppendWAL(1, begin+10, data); err == nil {
		t.Fatal("a write that is not at the end of the WAL was accepted")
	}
	if got := tl.FlushLSN(); got != begin {
		t.Fatalf("flush LSN before Sync = %s, want %s (nothing fsynced yet)", got, begin)
	}
	flush, err := tl.Sync()
	if err != nil || flush != begin+3000 {
		t.Fatalf("Sync = %s, %v; want %s", flush, err, begin+3000)
	}
	for _, name := range []string{"000000010000000000000000", "000000010000000000000001"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err != nil {
			t.Fatalf("segment file: %v", err)
		}
	}
	got := make([]byte, 3000)
	if err := tl.ReadWAL(got, begin); err != nil || !bytes.Equal(got, data) {
		t.Fatalf("read back: %v, equal %v", err, bytes.Equal(got, data))
	}
	if err := tl.ReadWAL(got, begin+1); err == nil {
		t.Fatal("a read beyond the flush LSN succeeded")
	}

	// Reopen without Close (as after kill -9): the WAL files say where
	// the WAL ends, even though the control file was written earlier.
	tl2, err := openTimeline(dir, tl.Tenant, tl.Timeline, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	st := tl2.State()
	if st.FlushLSN != begin+3000 || st.BeginLSN != begin || st.Term != 1 || st.History.String() != "1@0/0" {
		t.Fatalf("reopened state %+v", st)
	}
	tl.wal.closeAll()

	// The control file records the flush LSN; then a truncation across a
	// segment boundary cuts the files and crashes before the control file.
	tl2.mu.Lock()
	err = tl2.persistLocked()
	tl2.mu.Unlock()
	if err != nil {
		t.Fatal(err)
	}
	cut := pgdata.LSN(pgdata.WALSegmentSize - 500)
	if err := tl2.wal.truncate(cut); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, "000000010000000000000001")); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("segment after the truncation point still exists: %v", err)
	}
	tl2.wal.closeAll()
	tl3, err := openTimeline(dir, tl.Tenant, tl.Timeline, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer tl3.Close()
	if got := tl3.FlushLSN(); got != cut {
		t.Fatalf("flush LSN after truncation and reopen = %s, want %s", got, cut)
	}
	got = make([]byte, cut-begin)
	if err := tl3.ReadWAL(got, begin); err != nil || !bytes.Equal(got, data[:cut-begin]) {
		t.Fatalf("read after truncation: %v", err)
	}
	// The interrupted truncation (files cut, control file not yet
	// written) was completed: the control file agrees now.
	ctl, err := readControl(dir)
	if err != nil || ctl.FlushLSN != cut {
		t.Fatalf("control file after reopen: %+v, %v; want flush %s", ctl, err, cut)
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
	if _, err := openTimeline(dir, tl.Tenant, tl.Timeline, zerolog.Nop()); !errors.As(err, &ce) {
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
// the peers' horizon go; the segment holding either stays.
func TestRemoveOldWAL(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "tl")
	tl := newTestTimeline(t, dir)
	defer tl.Close()
	joinTerm(t, tl, 1)
	seg := pgdata.LSN(pgdata.WALSegmentSize)
	if err := tl.setCompute(1, 100, "x"); err != nil {
		t.Fatal(err)
	}
	if err := tl.AppendWAL(1, 100, make([]byte, 4*seg)); err != nil {
		t.Fatal(err)
	}
	if _, err := tl.Sync(); err != nil {
		t.Fatal(err)
	}
	exists := func(n uint64) bool {
		_, err := os.Stat(filepath.Join(dir, pgdata.WALFileName(1, n, pgdata.WALSegmentSize)))
		return err == nil
	}
	for _, tt := range []struct {
		pageserver, horizon pgdata.LSN
		gone                []uint64 // segments removed by now
		kept                []uint64
	}{
		{0, 4 * seg, nil, []uint64{0, 1, 2, 3, 4}},                // page server has nothing
		{2*seg + 5, seg + 1, []uint64{0}, []uint64{1, 2, 3, 4}},   // a peer needs segment 1
		{2*seg + 5, 4 * seg, []uint64{0, 1}, []uint64{2, 3, 4}},   // the page server needs segment 2
		{4*seg + 100, 5 * seg, []uint64{0, 1, 2, 3}, []uint64{4}}, // the last segment always stays
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
	if got := tl.State().BeginLSN; got != 4*seg {
		t.Errorf("begin LSN after removal = %s, want %s", got, 4*seg)
	}
}
