package walreceiver

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	"github.com/zenithdb/zenith/pgwire"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/vfs"
	"github.com/zenithdb/zenith/repo/walseg"
)

// load reads the control file and finds the durable end of the stored WAL,
// cutting off a torn tail.
func (s *WALStore) load() error {
	ctlPath := filepath.Join(s.dir, walStoreControlFile)
	for _, leftover := range []string{ctlPath + ".tmp", filepath.Join(s.dir, spaceProbeFile)} {
		if err := s.fs.Remove(leftover); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	b, err := vfs.ReadFile(s.fs, ctlPath)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return err
	default:
		if err := json.Unmarshal(b, &s.ctl); err != nil {
			return fmt.Errorf("control file %s: %w", ctlPath, err)
		}
		if s.ctl.Version != walStoreControlVersion {
			return fmt.Errorf("control file %s: version %d, want %d", ctlPath, s.ctl.Version, walStoreControlVersion)
		}
	}
	segs, err := s.listSegments()
	if err != nil {
		return err
	}
	if s.ctl.Start == 0 {
		if len(segs) > 0 {
			return fmt.Errorf("%d WAL segment files but no start in %s", len(segs), ctlPath)
		}
		return nil
	}
	stored, err := s.storedBytesEnd(segs)
	if err != nil {
		return err
	}
	s.end = stored
	// Not the files' lengths: they are whole segments (see the top of
	// walstore.go).
	end, err := s.segs.RecordEnd(context.Background(), s.ctl.Start)
	if err != nil {
		return err
	}
	end = min(end, stored)
	if end < stored {
		s.log.Warn().Stringer("end", end).Int64("bytes", int64(stored-end)).Msg("cutting off a torn WAL tail")
	}
	// Cut the torn tail; then make what remains durable: a page server
	// killed before its Sync left written bytes in the page cache only.
	if err := s.segs.Truncate(end); err != nil {
		return err
	}
	for _, seg := range segs {
		if s.segs.Start(seg) < end || seg == end.SegmentNo(s.segSize) {
			if err := s.segs.SyncSegment(seg); err != nil {
				return err
			}
		}
	}
	s.end, s.flushed = end, end
	s.log.Info().Stringer("start", s.ctl.Start).Stringer("end", end).Msg("opened WAL store")
	return nil
}

// listSegments returns the numbers of the segment files in the store,
// sorted. Files other than segments and the control file do not belong.
func (s *WALStore) listSegments() ([]uint64, error) {
	segs, others, err := s.segs.List()
	if err != nil {
		return nil, err
	}
	for _, name := range others {
		if name != walStoreControlFile {
			return nil, fmt.Errorf("unexpected file %s in the WAL store", name)
		}
	}
	return segs, nil
}

// storedBytesEnd is the end of the WAL bytes the segment files hold without
// a hole: from the start's segment on, up to the first missing or short
// file.
func (s *WALStore) storedBytesEnd(segs []uint64) (pgdata.LSN, error) {
	first := s.ctl.Start.SegmentNo(s.segSize)
	end := s.ctl.Start
	for i, seg := range segs {
		if seg < first {
			return 0, fmt.Errorf("segment file %s is below the store's start %v", s.segs.Name(seg), s.ctl.Start)
		}
		if seg != first+uint64(i) {
			break
		}
		size, err := s.segs.Size(seg)
		if err != nil {
			return 0, err
		}
		fileEnd := s.segs.Start(seg) + pgdata.LSN(size)
		if fileEnd <= end {
			break
		}
		end = fileEnd
		if uint64(size) < s.segSize {
			break
		}
	}
	return end, nil
}

// recordStartIn is where the first record that starts in segment seg
// starts, judged from the page headers (as XLogFindNextRecord does): the
// store's start in its first segment, elsewhere after the rest of a
// record continued from the previous segment. It reads no byte at or
// after limit, and returns errNoRecordStart if no record start is found
// below it.
func (s *WALStore) recordStartIn(seg uint64, limit pgdata.LSN) (pgdata.LSN, error) {
	if seg == s.ctl.Start.SegmentNo(s.segSize) {
		return s.ctl.Start, nil
	}
	segStart := s.segs.Start(seg)
	for page := segStart; page < segStart+pgdata.LSN(s.segSize); page += pgdata.XLogBlockSize {
		size := pgdata.LSN(pgdata.XLogShortPageHeaderSize)
		if page == segStart {
			size = pgdata.XLogLongPageHeaderSize
		}
		if page+size > limit {
			return 0, errNoRecordStart
		}
		b := make([]byte, size)
		if err := s.readAt(b, page); err != nil {
			return 0, err
		}
		h, err := pgdata.ParseXLogPageHeader(b)
		if err == nil {
			err = h.Check(page, s.segSize, walseg.Timeline)
		}
		if err != nil {
			return 0, fmt.Errorf("WAL page header at %v: %w", page, err)
		}
		switch rest := pgdata.LSN(h.RemLen).Align(); {
		case h.Info&pgdata.XLPFirstIsContRecord == 0:
			return page + size, nil
		case rest < pgdata.XLogBlockSize-size:
			return page + size + rest, nil
		}
	}
	return 0, errNoRecordStart
}

// PrevRecord returns the start of the stored record that ends at end (a
// record's EndLSN), or an error wrapping ErrNoRecordEndsAt if no
// record ends there. At the store's start it answers with the previous
// record given to Init, when known.
func (s *WALStore) PrevRecord(ctx context.Context, end pgdata.LSN) (pgdata.LSN, error) {
	s.mu.Lock()
	ctl, storeEnd := s.ctl, s.end
	s.mu.Unlock()
	if end == ctl.Start && ctl.StartPrev != 0 {
		return ctl.StartPrev, nil
	}
	if ctl.Start == 0 || end <= ctl.Start || end > storeEnd.Align()+pgdata.LSN(s.segSize) {
		return 0, fmt.Errorf("previous record of %v: the store holds %v to %v: %w", end, ctl.Start, storeEnd, ErrNoRecordEndsAt)
	}
	seg := (end - 1).SegmentNo(s.segSize)
	for {
		from, err := s.recordStartIn(seg, storeEnd)
		if err == nil && from < end {
			var start pgdata.LSN
			found := false
			_, err := pgdata.ScanWAL(ctx, from, storeEnd, s.segSize, s.readAt, func(rec *pgdata.Record) bool {
				if rec.EndLSN == end {
					start, found = rec.LSN, true
				}
				return rec.EndLSN >= end
			})
			var eow *pgdata.EndOfWALError
			if err != nil && !errors.As(err, &eow) {
				return 0, fmt.Errorf("previous record of %v: %w", end, err)
			}
			if !found {
				return 0, fmt.Errorf("previous record of %v: %w", end, ErrNoRecordEndsAt)
			}
			return start, nil
		}
		if err != nil && !errors.Is(err, errNoRecordStart) {
			return 0, fmt.Errorf("previous record of %v: %w", end, err)
		}
		if seg == ctl.Start.SegmentNo(s.segSize) {
			return 0, fmt.Errorf("previous record of %v: %w", end, ErrNoRecordEndsAt)
		}
		seg--
	}
}

// segmentCommits summarises the commit records that start in a segment,
// for FindLSNForTime to skip segments without looking at their records.
type segmentCommits struct {
	any     bool
	minTime int64 // the oldest xact_time of them, as a PostgreSQL timestamp
}

// FindLSNForTime returns the end LSN of the last stored commit record (in
// WAL order) whose commit time is at or before t, or an error wrapping
// ErrNoCommitBefore. It decodes segments from the newest back, skipping
// the complete segments it has seen to hold no commit that old.
func (s *WALStore) FindLSNForTime(ctx context.Context, t time.Time) (pgdata.LSN, error) {
	target := pgwire.ToPGTime(t)
	s.mu.Lock()
	start, end := s.ctl.Start, s.end
	s.mu.Unlock()
	if start == 0 || end == start {
		return 0, fmt.Errorf("commit at or before %v: the store is empty: %w", t, ErrNoCommitBefore)
	}
	for seg := (end - 1).SegmentNo(s.segSize); ; seg-- {
		s.mu.Lock()
		sum, cached := s.timeIndex[seg]
		s.mu.Unlock()
		if !cached || sum.any && sum.minTime <= target {
			lsn, found, err := s.lastCommitIn(ctx, seg, end, target)
			if err != nil {
				return 0, fmt.Errorf("commit at or before %v: %w", t, err)
			}
			if found {
				return lsn, nil
			}
		}
		if seg == start.SegmentNo(s.segSize) {
			return 0, fmt.Errorf("commit at or before %v: %w", t, ErrNoCommitBefore)
		}
	}
}

// lastCommitIn decodes the records that start in segment seg and returns
// the end of the last commit record at or before target. When the
// segment's records are all complete below end, it remembers the
// segment's summary.
func (s *WALStore) lastCommitIn(ctx context.Context, seg uint64, end pgdata.LSN, target int64) (pgdata.LSN, bool, error) {
	segEnd := s.segs.Start(seg + 1)
	from, err := s.recordStartIn(seg, end)
	if errors.Is(err, errNoRecordStart) {
		if end >= segEnd {
			s.remember(seg, segmentCommits{})
		}
		return 0, false, nil
	}
	if err != nil {
		return 0, false, err
	}
	var sum segmentCommits
	var best pgdata.LSN
	complete := false
	_, err = pgdata.ScanWAL(ctx, from, end, s.segSize, s.readAt, func(rec *pgdata.Record) bool {
		if rec.LSN >= segEnd {
			complete = true
			return true
		}
		ts, ok := commitTime(rec)
		if !ok {
			return false
		}
		if !sum.any || ts < sum.minTime {
			sum.minTime = ts
		}
		sum.any = true
		if ts <= target {
			best = rec.EndLSN
		}
		return false
	})
	if err != nil {
		return 0, false, err
	}
	if complete {
		s.remember(seg, sum)
	}
	return best, best != 0, nil
}

func (s *WALStore) remember(seg uint64, sum segmentCommits) {
	s.mu.Lock()
	s.timeIndex[seg] = sum
	s.mu.Unlock()
}

// commitTime returns the xact_time of a commit record (plain or of a
// prepared transaction).
func commitTime(rec *pgdata.Record) (int64, bool) {
	if rec.Rmgr() != pgdata.RmgrTransaction {
		return 0, false
	}
	switch rec.Header.Info & pgdata.XLogXactOpMask {
	case pgdata.XLogXactCommit, pgdata.XLogXactCommitPrepared:
	default:
		return 0, false
	}
	x, err := pgdata.ParseXactEnd(rec)
	if err != nil {
		return 0, false
	}
	return x.XactTime, true
}
