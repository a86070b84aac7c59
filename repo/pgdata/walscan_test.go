package pgdata

import (
	"context"
	"errors"
	"fmt"
	"testing"
)

func TestScanWAL(t *testing.T) {
	const seg = 1 << 20
	w := newWALBuilder(seg, seg)
	var ends []LSN
	for i := 0; i < 40; i++ {
		w.record(RmgrLogicalMessage, 0, mainData(make([]byte, 1000+i*100)))
		ends = append(ends, w.pos().Align())
	}
	reader := func(wal []byte) func([]byte, LSN) error {
		return func(b []byte, lsn LSN) error {
			off := int(lsn - seg)
			if off < 0 || off+len(b) > len(wal) {
				return fmt.Errorf("read [%v, %v) outside the WAL", lsn, lsn+LSN(len(b)))
			}
			copy(b, wal[off:])
			return nil
		}
	}
	readAt := reader(w.buf)
	end := LSN(seg) + LSN(len(w.buf))
	ctx := context.Background()

	t.Run("all records", func(t *testing.T) {
		var got []LSN
		next, err := ScanWAL(ctx, seg, end, seg, readAt, func(r *Record) bool {
			got = append(got, r.EndLSN)
			return false
		})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) != len(ends) || got[len(got)-1] != ends[len(ends)-1] {
			t.Fatalf("got %d records ending at %v, want %d ending at %v", len(got), got[len(got)-1], len(ends), ends[len(ends)-1])
		}
		if next != ends[len(ends)-1] {
			t.Errorf("next record at %v, want %v", next, ends[len(ends)-1])
		}
	})
	t.Run("stop", func(t *testing.T) {
		n := 0
		next, err := ScanWAL(ctx, seg, end, seg, readAt, func(*Record) bool { n++; return n == 5 })
		if err != nil || next != ends[4] {
			t.Fatalf("got %v, %v; want %v", next, err, ends[4])
		}
	})
	t.Run("limit inside a record", func(t *testing.T) {
		next, err := ScanWAL(ctx, seg, ends[9]-10, seg, readAt, nil)
		if err != nil || next != ends[8] {
			t.Fatalf("got %v, %v; want %v (the last complete record's end)", next, err, ends[8])
		}
	})
	t.Run("end of WAL", func(t *testing.T) {
		// Zeros after the last record, as in a preallocated segment.
		withZeros := append(append([]byte(nil), w.buf...), make([]byte, XLogBlockSize)...)
		_, err := ScanWAL(ctx, seg, end+XLogBlockSize, seg, reader(withZeros), nil)
		var eow *EndOfWALError
		if !errors.As(err, &eow) || eow.LSN != ends[len(ends)-1] {
			t.Fatalf("got %v, want an end of WAL at %v", err, ends[len(ends)-1])
		}
	})
	t.Run("read error", func(t *testing.T) {
		boom := errors.New("boom")
		_, err := ScanWAL(ctx, seg, end, seg, func([]byte, LSN) error { return boom }, nil)
		if !errors.Is(err, boom) {
			t.Fatalf("got %v, want %v", err, boom)
		}
	})
	t.Run("cancelled", func(t *testing.T) {
		cctx, cancel := context.WithCancel(ctx)
		cancel()
		if _, err := ScanWAL(cctx, seg, end, seg, readAt, nil); !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v, want %v", err, context.Canceled)
		}
	})
}
