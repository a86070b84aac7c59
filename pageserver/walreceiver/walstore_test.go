package walreceiver

import (
	"bytes"
	"context"
	"errors"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/repo/pgcluster/pgwaldump"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/vfs"
)

// The "span" sample of repo/pgdata: 1 MiB segments 7 to 9 from a real
// PostgreSQL 15, starting at a record in segment 7, with a 100 KB record
// that continues from segment 7 into segment 8, an XLOG_SWITCH in segment
// 8, a commit in each segment, and zeros after the last record in the
// (cut short) segment 9 file.
const (
	spanDir     = "../../repo/pgdata/testdata/wal/span"
	spanSegSize = 1 << 20
	spanStart   = pgdata.LSN(0x7FB158)
	spanPrev    = pgdata.LSN(0x7FB130) // xl_prev of the first record
	spanEnd     = pgdata.LSN(0x902808) // pg_waldump: invalid record length at 0/902808
	spanBig     = pgdata.LSN(0x7FB1C8) // the 100 KB record
	spanSwitch  = pgdata.LSN(0x813A50)
	spanLast    = pgdata.LSN(0x9000A0) // the last record, 10 KB
)

// spanWAL returns the sample's bytes from spanStart to the end of its
// files.
func spanWAL(t *testing.T) []byte {
	t.Helper()
	var all []byte
	for seg := 7; seg <= 9; seg++ {
		b, err := os.ReadFile(filepath.Join(spanDir, pgdata.WALFileName(1, uint64(seg), spanSegSize)))
		if err != nil {
			t.Fatal(err)
		}
		if seg < 9 && len(b) != spanSegSize {
			t.Fatalf("segment %d is %d bytes", seg, len(b))
		}
		all = append(all, b...)
	}
	return all[spanStart-7*spanSegSize:]
}

// spanRecords decodes the sample on its own and checks it against
// pg_waldump's listing.
func spanRecords(t *testing.T, wal []byte) []*pgdata.Record {
	t.Helper()
	f, err := os.Open(filepath.Join(spanDir, "pg_waldump.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	golden, err := pgwaldump.ParseAll(f)
	if err != nil {
		t.Fatal(err)
	}
	dec := pgdata.NewWALDecoder(spanStart, spanSegSize)
	dec.Feed(wal)
	var recs []*pgdata.Record
	for {
		rec, err := dec.Next()
		if err != nil {
			break
		}
		recs = append(recs, rec)
	}
	if len(recs) != len(golden) {
		t.Fatalf("decoded %d records, pg_waldump lists %d", len(recs), len(golden))
	}
	for i, r := range recs {
		if r.LSN != golden[i].LSN || r.Header.Prev != golden[i].Prev {
			t.Fatalf("record %d at %v (prev %v), pg_waldump says %v (prev %v)", i, r.LSN, r.Header.Prev, golden[i].LSN, golden[i].Prev)
		}
	}
	return recs
}

func openTestStore(t *testing.T, dir string) *WALStore {
	t.Helper()
	s, err := OpenWALStore(vfs.Default, dir, spanSegSize, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// writeChunks writes b at lsn in random pieces.
func writeChunks(t *testing.T, s *WALStore, lsn pgdata.LSN, b []byte, rnd *rand.Rand) {
	t.Helper()
	for len(b) > 0 {
		n := min(len(b), 1+rnd.IntN(64<<10))
		if err := s.Write(lsn, b[:n]); err != nil {
			t.Fatal(err)
		}
		lsn, b = lsn+pgdata.LSN(n), b[n:]
	}
}

func storedBytes(t *testing.T, s *WALStore) []byte {
	t.Helper()
	r, err := s.Reader(s.Start())
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestWALStoreFlushedOnlyAfterSync(t *testing.T) {
	wal := spanWAL(t)
	dir := t.TempDir()
	s := openTestStore(t, dir)
	if err := s.Init(spanStart, spanPrev); err != nil {
		t.Fatal(err)
	}
	half := pgdata.LSN(len(wal) / 2)
	writeChunks(t, s, spanStart, wal[:half], rand.New(rand.NewPCG(1, 2)))
	if got, want := s.End(), spanStart+half; got != want {
		t.Fatalf("End after writing = %v, want %v", got, want)
	}
	if got := s.Flushed(); got != spanStart {
		t.Fatalf("Flushed before Sync = %v, want the start %v", got, spanStart)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	if got, want := s.Flushed(), spanStart+half; got != want {
		t.Fatalf("Flushed after Sync = %v, want %v", got, want)
	}
}

// TestWALStoreReopen writes the sample (ending in zeros, as a torn write
// would), syncs it, and reopens the store: it holds exactly the bytes up
// to the end of the last complete record, durable, and the last file is a
// whole segment with zeros after it.
func TestWALStoreReopen(t *testing.T) {
	wal := spanWAL(t)
	spanRecords(t, wal)
	dir := t.TempDir()
	s := openTestStore(t, dir)
	if err := s.Init(spanStart, spanPrev); err != nil {
		t.Fatal(err)
	}
	writeChunks(t, s, spanStart, wal, rand.New(rand.NewPCG(3, 4)))
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	s.Close()

	s = openTestStore(t, dir)
	if s.Start() != spanStart || s.End() != spanEnd || s.Flushed() != spanEnd {
		t.Fatalf("reopened store: start %v end %v flushed %v, want %v, %v, %v", s.Start(), s.End(), s.Flushed(), spanStart, spanEnd, spanEnd)
	}
	if got, want := storedBytes(t, s), wal[:spanEnd-spanStart]; !bytes.Equal(got, want) {
		t.Fatalf("reopened store holds %d bytes that differ from the %d written", len(got), len(want))
	}
	b, err := os.ReadFile(s.segs.Path(9))
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != spanSegSize {
		t.Errorf("last segment file is %d bytes, want a whole segment, %d", len(b), spanSegSize)
	} else if slices.ContainsFunc(b[spanEnd.SegmentOffset(spanSegSize):], func(c byte) bool { return c != 0 }) {
		t.Error("the last segment file holds more than zeros after the end")
	}
	// Writing goes on where it ended.
	if err := s.Write(spanEnd, []byte{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
}

// TestWALStoreTornTail stores the sample up to a cut or followed by
// garbage and checks where the reopened store ends and which segment files
// remain.
func TestWALStoreTornTail(t *testing.T) {
	wal := spanWAL(t)
	garbage := bytes.Repeat([]byte{0xA5}, 3000)
	for _, tc := range []struct {
		name    string
		upTo    pgdata.LSN // bytes of the sample written
		extra   []byte     // then these
		wantEnd pgdata.LSN
		segs    []uint64 // segment files that remain
	}{
		{"garbage after the last record", spanEnd, garbage, spanEnd, []uint64{7, 8, 9}},
		{"inside the last record", spanLast + 5000, nil, spanLast, []uint64{7, 8, 9}},
		{"inside a record header", spanLast + 10, nil, spanLast, []uint64{7, 8, 9}},
		{"a record that continues into the next segment", 0x805000, nil, spanBig, []uint64{7}},
		{"that record, on the first page of the next segment", 0x800010, nil, spanBig, []uint64{7}},
		{"that record, then garbage", 0x805000, garbage, spanBig, []uint64{7}},
		// The rest of the segment after an XLOG_SWITCH is zeros, as
		// the whole segment file is: the store holds it.
		{"after XLOG_SWITCH, in the unused rest of its segment", 0x814000, nil, 0x900000, []uint64{7, 8}},
		{"nothing after the start", spanStart, garbage, spanStart, []uint64{7}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openTestStore(t, dir)
			if err := s.Init(spanStart, spanPrev); err != nil {
				t.Fatal(err)
			}
			writeChunks(t, s, spanStart, wal[:tc.upTo-spanStart], rand.New(rand.NewPCG(5, 6)))
			if err := s.Write(tc.upTo, tc.extra); err != nil {
				t.Fatal(err)
			}
			if err := s.Sync(); err != nil {
				t.Fatal(err)
			}
			s.Close()

			s = openTestStore(t, dir)
			if got := s.End(); got != tc.wantEnd {
				t.Errorf("End = %v, want %v", got, tc.wantEnd)
			}
			if got := s.Flushed(); got != tc.wantEnd {
				t.Errorf("Flushed = %v, want %v", got, tc.wantEnd)
			}
			segs, err := s.listSegments()
			if err != nil {
				t.Fatal(err)
			}
			if !slicesEqual(segs, tc.segs) {
				t.Errorf("segment files %v, want %v", segs, tc.segs)
			}
			if got, want := storedBytes(t, s), wal[:tc.wantEnd-spanStart]; !bytes.Equal(got, want) {
				t.Errorf("stored bytes differ from the sample's")
			}
		})
	}
}

func slicesEqual(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

func TestWALStoreWriteContinuity(t *testing.T) {
	wal := spanWAL(t)
	s := openTestStore(t, t.TempDir())
	if err := s.Write(spanStart, wal[:100]); err == nil {
		t.Fatal("Write before Init succeeded")
	}
	if err := s.Init(spanStart, spanPrev); err != nil {
		t.Fatal(err)
	}
	if err := s.Init(spanStart, spanPrev); err == nil {
		t.Fatal("a second Init succeeded")
	}
	if err := s.Write(spanStart, wal[:1000]); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		at      pgdata.LSN
		b       []byte
		want    error
		wantEnd pgdata.LSN
	}{
		{"gap", spanStart + 1008, wal[1008:1100], ErrWALGap, spanStart + 1000},
		{"below the start", spanStart - 8, wal[:100], ErrWALGap, spanStart + 1000},
		{"overlap that differs", spanStart + 900, append([]byte{wal[900] ^ 1}, wal[901:1200]...), ErrWALMismatch, spanStart + 1000},
		{"overlap that matches", spanStart + 900, wal[900:1200], nil, spanStart + 1200},
		{"inside the stored WAL", spanStart + 10, wal[10:20], nil, spanStart + 1200},
		{"contiguous", spanStart + 1200, wal[1200:1300], nil, spanStart + 1300},
	} {
		err := s.Write(tc.at, tc.b)
		if !errors.Is(err, tc.want) || (err == nil) != (tc.want == nil) {
			t.Errorf("%s: Write at %v: %v, want %v", tc.name, tc.at, err, tc.want)
		}
		if got := s.End(); got != tc.wantEnd {
			t.Errorf("%s: End = %v, want %v", tc.name, got, tc.wantEnd)
		}
	}
	if got := storedBytes(t, s); !bytes.Equal(got, wal[:1300]) {
		t.Error("stored bytes differ from the sample's")
	}
}

func TestWALStorePrevRecord(t *testing.T) {
	wal := spanWAL(t)
	recs := spanRecords(t, wal)
	s := openTestStore(t, t.TempDir())
	if err := s.Init(spanStart, spanPrev); err != nil {
		t.Fatal(err)
	}
	writeChunks(t, s, spanStart, wal[:spanEnd-spanStart], rand.New(rand.NewPCG(7, 8)))
	ctx := context.Background()

	type query struct {
		end, want pgdata.LSN // want 0: not a record boundary
	}
	queries := []query{{spanStart, spanPrev}}
	for _, r := range recs {
		queries = append(queries, query{r.EndLSN, r.LSN}, query{r.LSN + 8, 0})
	}
	queries = append(queries, query{spanStart - 8, 0}, query{spanEnd + 8, 0})
	for _, q := range queries {
		got, err := s.PrevRecord(ctx, q.end)
		switch {
		case q.want == 0 && !errors.Is(err, ErrNoRecordEndsAt):
			t.Errorf("PrevRecord(%v) = %v, %v; want ErrNoRecordEndsAt", q.end, got, err)
		case q.want != 0 && (err != nil || got != q.want):
			t.Errorf("PrevRecord(%v) = %v, %v; want %v", q.end, got, err, q.want)
		}
	}
	if recs[5].LSN != spanSwitch || recs[5].EndLSN != 0x900000 {
		t.Fatalf("record 5 at %v ends at %v, want the XLOG_SWITCH at %v ending at the segment's end", recs[5].LSN, recs[5].EndLSN, spanSwitch)
	}
}

func TestWALStoreFindLSNForTime(t *testing.T) {
	wal := spanWAL(t)
	s := openTestStore(t, t.TempDir())
	if err := s.Init(spanStart, spanPrev); err != nil {
		t.Fatal(err)
	}
	writeChunks(t, s, spanStart, wal[:spanEnd-spanStart], rand.New(rand.NewPCG(9, 10)))
	ts := func(s string) time.Time {
		v, err := time.Parse("2006-01-02 15:04:05.999999", s)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	// The commits, as pg_waldump.txt prints them, and their records' ends.
	c1, c2, c3 := ts("2026-11-21 06:09:21.894737"), ts("2026-11-21 06:09:21.964643"), ts("2026-11-21 06:09:22.036510")
	const e1, e2, e3 = pgdata.LSN(0x7FB1C8), spanSwitch, spanLast
	us := time.Microsecond
	ctx := context.Background()
	// Twice: the second round uses what the first learnt of each segment.
	for round := 0; round < 2; round++ {
		for _, tc := range []struct {
			at   time.Time
			want pgdata.LSN // 0: ErrNoCommitBefore
		}{
			{c1.Add(-us), 0},
			{c1, e1},
			{c2.Add(-us), e1},
			{c2, e2},
			{c3.Add(-us), e2},
			{c3, e3},
			{c3.Add(time.Hour), e3},
			{time.Time{}, 0},
		} {
			got, err := s.FindLSNForTime(ctx, tc.at)
			switch {
			case tc.want == 0 && !errors.Is(err, ErrNoCommitBefore):
				t.Errorf("round %d: FindLSNForTime(%v) = %v, %v; want ErrNoCommitBefore", round, tc.at, got, err)
			case tc.want != 0 && (err != nil || got != tc.want):
				t.Errorf("round %d: FindLSNForTime(%v) = %v, %v; want %v", round, tc.at, got, err, tc.want)
			}
		}
	}
	if n := len(s.timeIndex); n != 2 {
		t.Errorf("%d segments summarised, want the 2 complete ones", n)
	}
}

func TestWALStoreSourcePersists(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir)
	const src = "host=127.0.0.1 port=5432 user=postgres application_name=pageserver"
	if err := s.SetSource(src); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openTestStore(t, dir)
	if got := s.Source(); got != src {
		t.Errorf("Source after reopening = %q, want %q", got, src)
	}
	if got := s.Start(); got != 0 {
		t.Errorf("Start of a store never written = %v, want 0", got)
	}
}

// spanStore is a store in dir holding the span sample, synced, and the
// sample's records.
func spanStore(t *testing.T, dir string, seed uint64) (*WALStore, []*pgdata.Record) {
	t.Helper()
	wal := spanWAL(t)
	recs := spanRecords(t, wal)
	s := openTestStore(t, dir)
	if err := s.Init(spanStart, spanPrev); err != nil {
		t.Fatal(err)
	}
	writeChunks(t, s, spanStart, wal[:spanEnd-spanStart], rand.New(rand.NewPCG(seed, seed+1)))
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	return s, recs
}

func TestWALStoreRemoveBelow(t *testing.T) {
	dir := t.TempDir()
	s, recs := spanStore(t, dir, 11)
	cut := recs[7].LSN // in segment 9
	if err := s.RemoveBelow(cut); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openTestStore(t, dir)
	segs, err := s.listSegments()
	if err != nil {
		t.Fatal(err)
	}
	if !slicesEqual(segs, []uint64{9}) || s.Start() != cut || s.End() != spanEnd {
		t.Errorf("after RemoveBelow(%v) and reopening: segments %v, start %v, end %v; want [9], %v, %v", cut, segs, s.Start(), s.End(), cut, spanEnd)
	}
	if got, err := s.PrevRecord(context.Background(), recs[8].EndLSN); err != nil || got != recs[8].LSN {
		t.Errorf("PrevRecord(%v) = %v, %v; want %v", recs[8].EndLSN, got, err, recs[8].LSN)
	}
}

// TestWALStoreTrimBelow: trimming at any LSN removes the whole segments
// below its segment and keeps the store starting at a record boundary:
// the first record that starts in that segment.
func TestWALStoreTrimBelow(t *testing.T) {
	dir := t.TempDir()
	s, recs := spanStore(t, dir, 13)
	// In the first segment: nothing to remove.
	if err := s.TrimBelow(recs[1].EndLSN); err != nil || s.Start() != spanStart {
		t.Fatalf("TrimBelow(%v) in the first segment: %v, start %v; want nothing removed (start %v)", recs[1].EndLSN, err, s.Start(), spanStart)
	}
	// The first record starting in segment 9.
	first := -1
	for i, r := range recs {
		if r.LSN.SegmentNo(s.SegmentSize()) == 9 {
			first = i
			break
		}
	}
	if first < 0 || first+1 >= len(recs) {
		t.Fatal("the sample has no record starting in segment 9 with one after it")
	}
	limit := recs[first+1].LSN + 3 // not a record boundary
	if err := s.TrimBelow(limit); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openTestStore(t, dir)
	segs, err := s.listSegments()
	if err != nil {
		t.Fatal(err)
	}
	if !slicesEqual(segs, []uint64{9}) || s.Start() != recs[first].LSN || s.End() != spanEnd {
		t.Errorf("after TrimBelow(%v) and reopening: segments %v, start %v, end %v; want [9], %v, %v", limit, segs, s.Start(), s.End(), recs[first].LSN, spanEnd)
	}
	if got, err := s.PrevRecord(context.Background(), recs[first+1].EndLSN); err != nil || got != recs[first+1].LSN {
		t.Errorf("PrevRecord(%v) = %v, %v; want %v", recs[first+1].EndLSN, got, err, recs[first+1].LSN)
	}
}

// TestWALStoreTruncate cuts the stored sample back to a record end, as the
// WAL receiver does on connecting: what follows may then be another
// history's bytes, the files are cut, and the cut survives a reopen.
func TestWALStoreTruncate(t *testing.T) {
	wal := spanWAL(t)
	other := bytes.Repeat([]byte{0x5A}, 3000)
	for _, tc := range []struct {
		name        string
		upTo        pgdata.LSN // bytes of the sample written
		sync        bool       // and synced
		at          pgdata.LSN
		wantFlushed pgdata.LSN
		segs        []uint64 // segment files that remain
	}{
		{"inside the last record", spanLast + 5000, true, spanLast, spanLast, []uint64{7, 8, 9}},
		{"not synced", spanLast + 5000, false, spanLast, spanStart, []uint64{7, 8, 9}},
		{"a record that continues into the next segment", 0x805000, true, spanBig, spanBig, []uint64{7}},
		{"at the end", spanLast, true, spanLast, spanLast, []uint64{7, 8, 9}},
		{"at the start", spanBig + 5000, true, spanStart, spanStart, []uint64{7}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			s := openTestStore(t, dir)
			if err := s.Init(spanStart, spanPrev); err != nil {
				t.Fatal(err)
			}
			writeChunks(t, s, spanStart, wal[:tc.upTo-spanStart], rand.New(rand.NewPCG(7, 8)))
			if tc.sync {
				if err := s.Sync(); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Truncate(tc.at); err != nil {
				t.Fatal(err)
			}
			if got := s.End(); got != tc.at {
				t.Errorf("End = %v, want %v", got, tc.at)
			}
			if got := s.Flushed(); got != tc.wantFlushed {
				t.Errorf("Flushed = %v, want %v", got, tc.wantFlushed)
			}
			segs, err := s.listSegments()
			if err != nil {
				t.Fatal(err)
			}
			if !slicesEqual(segs, tc.segs) {
				t.Errorf("segment files %v, want %v", segs, tc.segs)
			}
			if got, want := storedBytes(t, s), wal[:tc.at-spanStart]; !bytes.Equal(got, want) {
				t.Errorf("stored bytes differ from the sample's")
			}
			// Other bytes than the ones cut off may follow now.
			if err := s.Write(tc.at, other); err != nil {
				t.Fatalf("Write of other bytes after the cut: %v", err)
			}
			if err := s.Truncate(tc.at); err != nil {
				t.Fatal(err)
			}
			writeChunks(t, s, tc.at, wal[tc.at-spanStart:spanEnd-spanStart], rand.New(rand.NewPCG(9, 10)))
			if err := s.Sync(); err != nil {
				t.Fatal(err)
			}
			s.Close()
			s = openTestStore(t, dir)
			if got := s.End(); got != spanEnd {
				t.Errorf("reopened after writing the sample again: End = %v, want %v", got, spanEnd)
			}
			if got, want := storedBytes(t, s), wal[:spanEnd-spanStart]; !bytes.Equal(got, want) {
				t.Errorf("reopened store holds bytes that differ from the sample's")
			}
		})
	}
}

func TestWALStoreTruncateOutside(t *testing.T) {
	wal := spanWAL(t)
	s := openTestStore(t, t.TempDir())
	if err := s.Init(spanStart, spanPrev); err != nil {
		t.Fatal(err)
	}
	if err := s.Write(spanStart, wal[:1000]); err != nil {
		t.Fatal(err)
	}
	for _, at := range []pgdata.LSN{spanStart - 8, spanStart + 1008} {
		if err := s.Truncate(at); err == nil {
			t.Errorf("Truncate(%v) of a store holding %v to %v succeeded", at, spanStart, spanStart+1000)
		}
	}
	if got := s.End(); got != spanStart+1000 {
		t.Errorf("End after refused truncations = %v, want %v", got, spanStart+1000)
	}
}

// TestWALStoreSyncFailsOnFullDisk fills the disk under a store: every
// create and every write fails for want of space, but for writes into the
// segment files, preallocated, which need none. Sync must then fail with
// the disk-full error and leave Flushed where it was, so that the receiver
// reports no flush and commits wait; once space is back, Sync makes the
// same bytes durable. (Before the store checked for space, Sync succeeded
// on the full disk.)
func TestWALStoreSyncFailsOnFullDisk(t *testing.T) {
	wal := spanWAL(t)
	faulty := vfs.NewFaulty(vfs.Default)
	s, err := OpenWALStore(faulty, t.TempDir(), spanSegSize, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	s.checkSpaceEvery = 0 // every Sync checks
	if err := s.Init(spanStart, spanPrev); err != nil {
		t.Fatal(err)
	}
	write := func(from, to pgdata.LSN) {
		t.Helper()
		if err := s.Write(from, wal[from-spanStart:to-spanStart]); err != nil {
			t.Fatal(err)
		}
	}
	first, second := spanStart+8<<10, spanStart+16<<10 // both in segment 7
	write(spanStart, first)
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}

	faulty.SetRule(func(op vfs.Op, name string) error {
		if (op == vfs.OpCreate || op == vfs.OpWrite) && len(filepath.Base(name)) != pgdata.WALFileNameLen {
			return &vfs.DiskFullError{Path: name, Err: syscall.ENOSPC}
		}
		return nil
	})
	write(first, second) // into the preallocated segment: no space needed
	err = s.Sync()
	if !vfs.IsDiskFull(err) {
		t.Fatalf("Sync on a full disk: %v, want a disk-full error", err)
	}
	if got := s.Flushed(); got != first {
		t.Fatalf("Flushed after a Sync on a full disk = %v, want %v as before", got, first)
	}
	if _, err := os.Stat(filepath.Join(s.dir, spaceProbeFile)); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the space check left its file behind: %v", err)
	}

	faulty.SetRule(nil)
	if err := s.Sync(); err != nil {
		t.Fatalf("Sync once space is back: %v", err)
	}
	if got := s.Flushed(); got != second {
		t.Fatalf("Flushed once space is back = %v, want %v", got, second)
	}
}

// TestWALStoreLeftoverProbe reopens a store whose space check's file a
// crash left behind: the store opens (a file it does not know would make
// it refuse) and the file is gone.
func TestWALStoreLeftoverProbe(t *testing.T) {
	wal := spanWAL(t)
	dir := t.TempDir()
	s := openTestStore(t, dir)
	if err := s.Init(spanStart, spanPrev); err != nil {
		t.Fatal(err)
	}
	end := spanStart + 8<<10
	if err := s.Write(spanStart, wal[:end-spanStart]); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	s.Close()
	probe := filepath.Join(dir, spaceProbeFile)
	if err := os.WriteFile(probe, spaceProbe[:], 0o600); err != nil {
		t.Fatal(err)
	}
	s = openTestStore(t, dir)
	if got := s.Flushed(); got < spanStart || got > end {
		t.Errorf("reopened store's Flushed = %v, want within [%v, %v]", got, spanStart, end)
	}
	if _, err := os.Stat(probe); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("the leftover probe file is still there: %v", err)
	}
}
