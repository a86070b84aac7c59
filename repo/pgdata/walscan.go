package pgdata

import (
	"context"
	"errors"
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
