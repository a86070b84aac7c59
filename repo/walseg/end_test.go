package walseg

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/vfs"
)

// The "span" sample of repo/pgdata: 1 MiB segments 7 to
// 9 of a real PostgreSQL 15, from a record in segment 7, with a 100 KB
// record from segment 7 into 8, an XLOG_SWITCH in 8, and zeros after the
// last record in 9.
const (
	spanDir    = "../pgdata/testdata/wal/span"
	spanStart  = pgdata.LSN(0x7FB158)
	spanEnd    = pgdata.LSN(0x902808) // pg_waldump: invalid record length at 0/902808
	spanBig    = pgdata.LSN(0x7FB1C8) // the 100 KB record
	spanSwitch = pgdata.LSN(0x813A50)
	spanLast   = pgdata.LSN(0x9000A0) // the last record, 10 KB
)

// spanWAL returns the sample's bytes from segment 7's start on.
func spanWAL(t *testing.T) []byte {
	t.Helper()
	var all []byte
	for seg := uint64(7); seg <= 9; seg++ {
		b, err := os.ReadFile(filepath.Join(spanDir, pgdata.WALFileName(1, seg, segSize)))
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, b...)
	}
	return all
}

// TestRecordEndAfterCrash writes real WAL into a preallocated store up to
// a point, syncs, crashes the machine, and finds the end again: the end
// of the last complete record in what was written, never past it (the
// rest of the file is zeros) and never below it, wherever the write
// stopped: inside a record, inside a page header, on the first page of a
// segment whose records began in the one before, or followed by garbage.
func TestRecordEndAfterCrash(t *testing.T) {
	wal := spanWAL(t)
	base := pgdata.LSN(7 * segSize)
	garbage := make([]byte, 3000)
	for i := range garbage {
		garbage[i] = 0xA5
	}
	for _, tc := range []struct {
		name    string
		upTo    pgdata.LSN // bytes of the sample written from spanStart
		extra   []byte     // then these
		wantEnd pgdata.LSN
	}{
		{"at the end of the last record", spanEnd, nil, spanEnd},
		{"garbage after the last record", spanEnd, garbage, spanEnd},
		{"inside the last record", spanLast + 5000, nil, spanLast},
		{"inside a record header", spanLast + 10, nil, spanLast},
		{"a record that continues into the next segment", 0x805000, nil, spanBig},
		{"that record, inside the next segment's page header", 0x800010, nil, spanBig},
		{"that record, after the next segment's page header", 0x800000 + pgdata.XLogLongPageHeaderSize + 100, nil, spanBig},
		{"after the XLOG_SWITCH: the rest of its segment is zeros", spanSwitch + 200, nil, 0x900000},
		{"nothing after the start", spanStart, garbage, spanStart},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mem := vfs.NewMem()
			s := mustOpenPreallocated(t, mem)
			b := append(wal[spanStart-base:tc.upTo-base:tc.upTo-base], tc.extra...)
			for off := 0; off < len(b); off += 8192 {
				if err := s.WriteAt(b[off:min(off+8192, len(b))], spanStart+pgdata.LSN(off)); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Sync(); err != nil {
				t.Fatal(err)
			}
			mem.Crash()
			s.Close()
			mem.Restart()
			s = mustOpenPreallocated(t, mem)
			got, err := s.RecordEnd(context.Background(), spanStart)
			if err != nil {
				t.Fatal(err)
			}
			if got != tc.wantEnd {
				t.Errorf("RecordEnd = %v, want %v", got, tc.wantEnd)
			}
		})
	}
}

// TestRecordEndFromRemovedBegin: where the segments below were removed,
// the stored WAL begins at a segment boundary inside a record; the end is
// found from the record start the page headers name.
func TestRecordEndFromRemovedBegin(t *testing.T) {
	wal := spanWAL(t)
	base := pgdata.LSN(7 * segSize)
	mem := vfs.NewMem()
	s := mustOpenPreallocated(t, mem)
	begin := pgdata.LSN(8 * segSize)
	if err := s.WriteAt(wal[begin-base:spanEnd-base], begin); err != nil {
		t.Fatal(err)
	}
	if err := s.Sync(); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name  string
		begin pgdata.LSN
		want  pgdata.LSN
	}{
		{"from the removal point", begin, spanEnd},
		{"from a segment with nothing stored", 10 * segSize, 10 * segSize},
	} {
		got, err := s.RecordEnd(context.Background(), tc.begin)
		if err != nil || got != tc.want {
			t.Errorf("%s: RecordEnd = %v, %v; want %v", tc.name, got, err, tc.want)
		}
	}
}
