package pgdata

import (
	"bytes"
	"errors"
	"math/rand"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// sampleStream is the WAL of a sample directory as a replication stream
// starting at start would carry it, and the segment size.
func sampleStream(t *testing.T, dir string, start LSN) ([]byte, uint64) {
	t.Helper()
	files := sampleFiles(t, dir)
	sort.Strings(files)
	n, err := walFileNameOf(files[0])
	if err != nil {
		t.Fatal(err)
	}
	segSize, _, err := readSegmentHeader(n.path, n.tli, n.log, n.seg)
	if err != nil {
		t.Fatal(err)
	}
	var stream []byte
	for i, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if i == 0 {
			b = b[start.SegmentOffset(segSize):]
		}
		stream = append(stream, b...)
	}
	return stream, segSize
}

// decodeStream feeds stream to d in chunks of the sizes chunk gives and
// returns the records, and the error after the last of them.
func decodeStream(t *testing.T, d *WALDecoder, stream []byte, chunk func() int) ([]*Record, error) {
	t.Helper()
	var recs []*Record
	for len(stream) > 0 {
		n := chunk()
		if n > len(stream) {
			n = len(stream)
		}
		d.Feed(stream[:n])
		stream = stream[n:]
		for {
			rec, err := d.Next()
			if errors.Is(err, ErrNeedMoreWAL) {
				break
			}
			if err != nil {
				return recs, err
			}
			recs = append(recs, rec)
		}
	}
	_, err := d.Next()
	return recs, err
}

func TestDecoderAnyChunking(t *testing.T) {
	for _, name := range samples {
		t.Run(name, func(t *testing.T) {
			dir := filepath.Join("testdata", "wal", name)
			want, wantEnd := readGolden(t, dir)
			start := sampleStart(t, dir)
			if start == 0 {
				start = want[0].lsn - LSN(want[0].lsn.PageOffset()) // the segment's first page
			}
			stream, segSize := sampleStream(t, dir, start)
			whole, wholeErr := decodeStream(t, NewWALDecoder(start, segSize), stream, func() int { return len(stream) })
			compareWithGolden(t, whole, want)
			var eow *EndOfWALError
			if !errors.As(wholeErr, &eow) || eow.Reason != wantEnd {
				t.Fatalf("end of WAL: %v, want %q", wholeErr, wantEnd)
			}

			rnd := rand.New(rand.NewSource(1))
			chunkings := map[string]func() int{
				"bytes":   func() int { return 1 },
				"small":   func() int { return 1 + rnd.Intn(64) },
				"pages":   func() int { return 1 + rnd.Intn(3*XLogBlockSize) },
				"ragged":  func() int { return []int{1, 7, 23, 24, 25, 8191, 8192, 8193, 40000}[rnd.Intn(9)] },
				"one big": func() int { return 1 << 30 },
			}
			for cname, chunk := range chunkings {
				got, err := decodeStream(t, NewWALDecoder(start, segSize), stream, chunk)
				if err.Error() != wholeErr.Error() {
					t.Errorf("%s: ended with %v, want %v", cname, err, wholeErr)
				}
				if len(got) != len(whole) {
					t.Fatalf("%s: %d records, want %d", cname, len(got), len(whole))
				}
				for i := range got {
					if !bytes.Equal(got[i].Raw, whole[i].Raw) || got[i].LSN != whole[i].LSN || got[i].EndLSN != whole[i].EndLSN {
						t.Fatalf("%s: record %d at %s differs from the one read in one piece", cname, i, got[i].LSN)
					}
				}
			}
		})
	}
}

// TestRecordEnds checks EndLSN: where the next record starts, after the
// next page's header if the record ends at a page end, and at the next
// segment after XLOG_SWITCH.
func TestRecordEnds(t *testing.T) {
	switches := 0
	for _, name := range samples {
		dir := filepath.Join("testdata", "wal", name)
		recs, _ := readAllWAL(t, []string{dir}, WALReadOptions{Start: sampleStart(t, dir)})
		for i := 0; i+1 < len(recs); i++ {
			end, next := recs[i].EndLSN, recs[i+1].LSN
			if recs[i].Rmgr() == RmgrXLOG && recs[i].RmgrInfo() == XLogSwitch {
				switches++
				if end.SegmentOffset(1<<20) != 0 {
					t.Errorf("%s: XLOG_SWITCH at %s ends at %s, not at a segment start", name, recs[i].LSN, end)
				}
			}
			if next != end && !(end.PageOffset() == 0 && (next == end+XLogShortPageHeaderSize || next == end+XLogLongPageHeaderSize)) {
				t.Errorf("%s: record at %s ends at %s, but the next one is at %s", name, recs[i].LSN, end, next)
			}
		}
	}
	if switches == 0 {
		t.Error("no XLOG_SWITCH record in the samples")
	}
}

func TestDecoderStartPositions(t *testing.T) {
	const seg = 1 << 20
	w := newWALBuilder(seg, seg)
	w.record(RmgrXLOG, XLogNoop, mainData([]byte("first")))
	w.record(RmgrXLOG, XLogNoop, mainData([]byte("second")))
	w.fillPage()
	atPageStart := w.record(RmgrXLOG, XLogNoop, mainData([]byte("right after a short page header")))
	unalignedEnd := atPageStart + LSN(XLogRecordHeaderSize+2+len("right after a short page header"))
	afterUnaligned := w.record(RmgrXLOG, XLogNoop, mainData([]byte("after an unaligned end")))
	spanning := w.record(RmgrLogicalMessage, 0, mainData(bytes.Repeat([]byte("s"), 3*XLogBlockSize)))
	last := w.record(RmgrXLOG, XLogNoop, mainData([]byte("last")))
	wal := w.buf
	at := func(lsn LSN) []byte { return wal[lsn-seg:] }

	tests := []struct {
		name   string
		start  LSN
		first  LSN    // the first record, if errHas is ""
		errHas string // the end of WAL the first Next reports
	}{
		{"segment start", seg, seg + XLogLongPageHeaderSize, ""},
		{"page start", atPageStart - XLogShortPageHeaderSize, atPageStart, ""},
		{"right after a page header", atPageStart, atPageStart, ""},
		{"unaligned end of a record", unalignedEnd, afterUnaligned, ""},
		{"a record spanning pages", spanning, spanning, ""},
		{"page start inside a record", spanning - LSN(spanning.PageOffset()) + XLogBlockSize, 0, "contrecord is requested by"},
		{"inside a page header", atPageStart - 16, 0, "invalid record offset at"},
		{"inside a long page header", seg + 24, 0, "invalid record offset at"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			d := NewWALDecoder(tt.start, seg)
			d.Feed(at(tt.start))
			rec, err := d.Next()
			if tt.errHas != "" {
				var eow *EndOfWALError
				if !errors.As(err, &eow) || !strings.Contains(eow.Reason, tt.errHas) {
					t.Fatalf("Next = %v, %v; want an end of WAL saying %q", rec, err, tt.errHas)
				}
				return
			}
			if err != nil || rec.LSN != tt.first {
				t.Fatalf("Next = %v, %v; want the record at %s", rec, err, tt.first)
			}
			for rec.LSN != last {
				if rec, err = d.Next(); err != nil {
					t.Fatalf("after %s: %v", rec.LSN, err)
				}
			}
		})
	}
}

// TestOverwriteContrecord reads WAL where a record was abandoned at the
// end of a page and the next page says so (XLP_FIRST_IS_OVERWRITE_CONTRECORD),
// as PostgreSQL writes after recovery stopped at a torn record.
func TestOverwriteContrecord(t *testing.T) {
	const seg = 1 << 20
	w := newWALBuilder(seg, seg)
	before := w.record(RmgrXLOG, XLogNoop, mainData([]byte("before")))
	abandoned := w.abandon(mainData(bytes.Repeat([]byte("a"), 2*XLogBlockSize)))
	overwrite := w.record(RmgrXLOG, XLogOverwriteContrecord, mainData(make([]byte, 16)))
	after := w.record(RmgrXLOG, XLogNoop, mainData([]byte("after")))
	if overwrite.PageOffset() != XLogShortPageHeaderSize {
		t.Fatalf("the overwrite record is at %s, want it right after a page header", overwrite)
	}
	want := []LSN{before, overwrite, after}

	d := NewWALDecoder(seg, seg)
	d.Feed(w.buf)
	var got []*Record
	for _, lsn := range want {
		rec, err := d.Next()
		if err != nil || rec.LSN != lsn {
			t.Fatalf("Next = %v, %v; want the record at %s (the abandoned one was at %s)", rec, err, lsn, abandoned)
		}
		got = append(got, rec)
	}
	compareWithGolden(t, got, runPGWaldump(t, t.TempDir(), seg, w.buf))
}

// runPGWaldump writes wal (starting at a segment start) as a segment file
// in dir and returns pg_waldump's records.
func runPGWaldump(t *testing.T, dir string, segStart LSN, wal []byte) []dumpedRecord {
	t.Helper()
	file := filepath.Join(dir, WALFileName(1, segStart.SegmentNo(1<<20), 1<<20))
	padded := append(append([]byte{}, wal...), make([]byte, XLogBlockSize-len(wal)%XLogBlockSize)...)
	if err := os.WriteFile(file, padded, 0o644); err != nil {
		t.Fatal(err)
	}
	recs, _ := pgWaldump(t, file)
	return recs
}
