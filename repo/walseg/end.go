package walseg

import (
	"context"
	"errors"
	"fmt"

	"github.com/zenithdb/zenith/repo/pgdata"
)

// RecordEnd finds where the written WAL ends after a restart, for a
// user of a preallocated store, whose files' lengths do not say: at the
// end of the last complete, valid record (page headers with the right
// address, CRCs: pgdata's decoder judges) in the run of segment files
// that starts at begin's segment. begin is where the stored WAL begins:
// a record boundary, or a page boundary whose page header says where the
// first record starts (where older segments were removed). With no file
// at begin's segment, or no record after begin, it returns begin.
//
// It decodes from the first record that starts in the last file but one
// (or at begin, in begin's segment): every byte below the last file was
// durable before that file was made (see the package doc), so the page
// header that says where that record starts is the WAL as written, and
// every record after it is checked whole by the decoder. Only the last
// file may end in a torn write, and decoding stops there.
func (s *Segments) RecordEnd(ctx context.Context, begin pgdata.LSN) (pgdata.LSN, error) {
	segs, _, err := s.List()
	if err != nil {
		return 0, err
	}
	first := begin.SegmentNo(s.segSize)
	last, found := first, false
	for _, seg := range segs {
		switch {
		case seg == first:
			found = true
		case found && seg == last+1:
			last = seg
		}
	}
	if !found {
		return begin, nil
	}
	size, err := s.Size(last)
	if err != nil {
		return 0, err
	}
	limit := s.Start(last) + pgdata.LSN(size)
	if limit <= begin {
		return begin, nil
	}
	seg := last
	if seg > first {
		seg--
	}
	for ; ; seg-- {
		from, err := s.recordStartIn(seg, begin)
		if err == nil && from < min(limit, s.Start(seg+1)) {
			end := from
			_, err := pgdata.ScanWAL(ctx, from, limit, s.segSize, s.ReadAt, func(rec *pgdata.Record) bool {
				// The end of the last record, not where the next
				// would start (after an XLOG_SWITCH, the next
				// segment); a record's EndLSN is MAXALIGNed, and
				// a short file may stop at its unaligned end.
				end = min(rec.EndLSN, limit)
				return false
			})
			var eow *pgdata.EndOfWALError
			if err != nil && !errors.As(err, &eow) {
				return 0, fmt.Errorf("find the end of the WAL in %s: %w", s.dir, err)
			}
			return end, nil
		}
		if seg == first {
			if last == first {
				// Nothing valid was written after begin's
				// page header, or not even it.
				return begin, nil
			}
			if err == nil {
				err = pgdata.ErrNoRecordStart
			}
			return 0, fmt.Errorf("find the end of the WAL in %s from %s: %w", s.dir, begin, err)
		}
		// One record covers the segment, or (in files an Open store
		// wrote, with no such promise) its page headers are torn:
		// a record start further back.
	}
}

// recordStartIn is where the first record that starts in segment seg
// starts, judged from its page headers as PostgreSQL's XLogFindNextRecord
// does; in begin's segment, begin if it is not a page boundary. An answer
// at or after the segment's end means none starts in it.
func (s *Segments) recordStartIn(seg uint64, begin pgdata.LSN) (pgdata.LSN, error) {
	page := s.Start(seg)
	if seg == begin.SegmentNo(s.segSize) {
		if begin.PageOffset() != 0 {
			return begin, nil
		}
		page = begin
	}
	return pgdata.FirstRecordStart(page, s.Start(seg+1), s.segSize, s.ReadAt)
}
