package pgdata

import (
	"context"
	"errors"
	"fmt"
)

// walScanChunk is how much stored WAL ScanWAL reads and decodes at a time.
const walScanChunk = 256 << 10

// ScanWAL decodes stored WAL from from, a record boundary, reading it with
// readAt in chunks up to limit, and calls fn (if not nil) on each record
// until fn says stop. It returns where the next record starts (the
// decoder's NextRecordLSN) once fn stops or the bytes up to limit are
// used up, the decoder's *EndOfWALError where the WAL stops being valid,
// or readAt's error. It is the one loop of Feed, Next and ErrNeedMoreWAL
// that every reader of stored WAL (a safekeeper's, the page server's)
// runs.
func ScanWAL(ctx context.Context, from, limit LSN, segSize uint64, readAt func(b []byte, lsn LSN) error, fn func(*Record) (stop bool)) (LSN, error) {
	dec := NewWALDecoder(from, segSize)
	buf := make([]byte, walScanChunk)
	pos := from
	for {
		rec, err := dec.Next()
		switch {
		case err == nil:
			if fn != nil && fn(rec) {
				return dec.NextRecordLSN(), nil
			}
		case errors.Is(err, ErrNeedMoreWAL):
			if pos >= limit {
				return dec.NextRecordLSN(), nil
			}
			if err := ctx.Err(); err != nil {
				return 0, err
			}
			n := min(LSN(len(buf)), limit-pos)
			if err := readAt(buf[:n], pos); err != nil {
				return 0, err
			}
			dec.Feed(buf[:n])
			pos += n
		default:
			return 0, err
		}
	}
}

// ErrNoRecordStart is returned by FirstRecordStart when no record starts
// in the WAL it may read.
var ErrNoRecordStart = errors.New("no record starts in the WAL")

// FirstRecordStart returns where the first record at or after page, the
// address of a WAL page, starts, judged from the page headers as
// PostgreSQL's XLogFindNextRecord does: right after the page's header,
// unless the page begins with the rest of a record begun on an earlier
// page, which it skips (over as many pages as that rest fills).
//
// It is how a reader of stored WAL that begins at a page boundary, such
// as a segment whose predecessors were removed, finds its first record
// boundary: the first bytes there may be the middle of a record. The
// answer may lie at or past limit (the rest ends there); it reads no byte
// at or after limit, and returns an error wrapping ErrNoRecordStart if no
// page header below limit says where a record starts.
func FirstRecordStart(page, limit LSN, segSize uint64, readAt func(b []byte, lsn LSN) error) (LSN, error) {
	if off := page.PageOffset(); off != 0 {
		return 0, fmt.Errorf("first record start: %s is not a page boundary", page)
	}
	for ; ; page += XLogBlockSize {
		size := LSN(XLogShortPageHeaderSize)
		if page.SegmentOffset(segSize) == 0 {
			size = XLogLongPageHeaderSize
		}
		if page+size > limit {
			return 0, fmt.Errorf("WAL from %s to %s: %w", page, limit, ErrNoRecordStart)
		}
		b := make([]byte, size)
		if err := readAt(b, page); err != nil {
			return 0, err
		}
		h, err := ParseXLogPageHeader(b)
		if err == nil {
			err = h.Check(page, segSize, h.TLI)
		}
		if err != nil {
			return 0, fmt.Errorf("WAL page header at %s: %w", page, err)
		}
		switch rest := LSN(h.RemLen).Align(); {
		case h.Info&XLPFirstIsContRecord == 0:
			return page + size, nil
		case rest < XLogBlockSize-size:
			return page + size + rest, nil
		}
	}
}
