package safekeeper

import (
	"context"
	"errors"
	"fmt"

	"github.com/zenithdb/zenith/repo/pgdata"
)

// RecordLSN returns the end of the last complete WAL record at or below
// the flush LSN: where a new term's compute may start. It decodes from the
// start of the last term (a record boundary), or, if the WAL below that was
// removed, from the first record that starts in the stored WAL; so its cost
// is that term's WAL. With no WAL it returns the flush LSN.
//
// Where the stored WAL begins is a record boundary when a compute started
// there, but once old segments are removed it is a segment boundary, whose
// first bytes may be the rest of a record begun in the removed WAL. The
// page header there says (as PostgreSQL's XLogFindNextRecord reads it):
// the records are decoded from the end of that rest, which is itself the
// end of a record; a page with no such rest is taken to begin right after
// a record, as the removed WAL cannot say otherwise.
//
// Old segments may be removed while it decodes (the lock is not held for
// the whole decode): it then starts again where the stored WAL begins now.
func (tl *Timeline) RecordLSN() (pgdata.LSN, error) {
	return tl.recordLSN(tl.ReadWAL)
}

// recordLSN is RecordLSN reading the WAL with read.
func (tl *Timeline) recordLSN(read func(b []byte, lsn pgdata.LSN) error) (pgdata.LSN, error) {
	for {
		end, err := tl.recordLSNOnce(read)
		if !errors.Is(err, ErrWALRemoved) {
			return end, err
		}
		tl.log.Debug().Err(err).Msg("WAL removed while looking for the last complete record; again")
	}
}

func (tl *Timeline) recordLSNOnce(read func(b []byte, lsn pgdata.LSN) error) (pgdata.LSN, error) {
	tl.mu.Lock()
	begin, flush := tl.wal.begin, tl.flush
	from := begin
	var termStart pgdata.LSN
	if n := len(tl.ctl.History); n > 0 {
		termStart = tl.ctl.History[n-1].Start
	}
	segSize := tl.ctl.SegmentSize
	tl.mu.Unlock()
	if termStart > from {
		from = termStart
	}
	if flush <= from {
		return flush, nil
	}
	end := from
	if from == begin && termStart < begin && begin.PageOffset() == 0 {
		first, err := pgdata.FirstRecordStart(begin, flush, segSize, read)
		if err != nil {
			return 0, fmt.Errorf("find the last complete record in the stored WAL [%s, %s): %w", begin, flush, err)
		}
		header := pgdata.LSN(pgdata.XLogShortPageHeaderSize)
		if begin.SegmentOffset(segSize) == 0 {
			header = pgdata.XLogLongPageHeaderSize
		}
		if first != begin+header {
			// The rest of a record from the removed WAL ends there.
			if first > flush {
				return 0, fmt.Errorf("find the last complete record in the stored WAL [%s, %s): the WAL ends inside a record begun below it, at %s: %w",
					begin, flush, first, pgdata.ErrNoRecordStart)
			}
			end = first
		}
		from = first
		if flush <= from {
			return end, nil
		}
	}
	_, err := pgdata.ScanWAL(context.Background(), from, flush, segSize, read, func(rec *pgdata.Record) bool {
		// A record's EndLSN is MAXALIGNed; the WAL may stop exactly at
		// its unaligned end.
		end = min(rec.EndLSN, flush)
		return false
	})
	var eow *pgdata.EndOfWALError
	if err != nil && !errors.As(err, &eow) {
		return 0, fmt.Errorf("decode WAL from %s: %w", from, err)
	}
	return end, nil
}

// divergence returns the LSN up to which WAL with history own, ending at
// ownEnd, is the same as WAL with history donor ending at donorEnd: the end
// of the last term both histories share, in the shorter of the two.
func divergence(own History, ownEnd pgdata.LSN, donor History, donorEnd pgdata.LSN) pgdata.LSN {
	k := 0
	for k < len(own) && k < len(donor) && own[k] == donor[k] {
		k++
	}
	if k == 0 {
		// No common term: only what precedes both first terms is shared.
		p := ownEnd
		if len(own) > 0 && own[0].Start < p {
			p = own[0].Start
		}
		if len(donor) > 0 && donor[0].Start < p {
			p = donor[0].Start
		}
		return p
	}
	endOf := func(h History, end pgdata.LSN) pgdata.LSN {
		if k < len(h) {
			return h[k].Start
		}
		return end
	}
	return min(endOf(own, ownEnd), endOf(donor, donorEnd))
}

// prepareElected is the first step of joining the elected term: it
// truncates the WAL that diverges from the donor's history (whose WAL ends
// at start) and returns where the WAL must be pulled from the donor.
// donorBegin is where the donor's WAL begins, for an empty timeline here.
func (tl *Timeline) prepareElected(term uint64, start pgdata.LSN, donor History, donorBegin pgdata.LSN) (pgdata.LSN, error) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if term != tl.ctl.Term {
		return 0, fmt.Errorf("elected term %d, but this safekeeper's term is %d: %w", term, tl.ctl.Term, ErrTermChanged)
	}
	p := divergence(tl.ctl.History, tl.flush, donor, start)
	if p < tl.wal.begin {
		p = tl.wal.begin
	}
	if tl.flush > p {
		tl.log.Info().Stringer("from", p).Stringer("to", tl.flush).Msg("truncating WAL that diverges from the elected history")
		// Files first, then the control file: openTimeline completes a
		// crash between the two.
		if err := tl.wal.truncate(p); err != nil {
			return 0, err
		}
		tl.flush = p
		tl.truncations++
		tl.lastCut = p
		tl.ctl.History = historyUpTo(tl.ctl.History, p)
		if tl.ctl.CommitLSN > p {
			tl.ctl.CommitLSN = p
		}
		if err := tl.persistLocked(); err != nil {
			return 0, err
		}
		tl.notifyLocked()
	}
	if tl.flush == tl.wal.begin && tl.flush != start {
		// Nothing stored: the WAL starts where the donor's does.
		if err := tl.wal.truncate(donorBegin); err != nil {
			return 0, err
		}
		tl.flush = donorBegin
	}
	return tl.flush, nil
}

// appendRecovered stores WAL pulled from the donor during an election.
func (tl *Timeline) appendRecovered(term uint64, lsn pgdata.LSN, b []byte) error {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if term != tl.ctl.Term {
		return ErrTermChanged
	}
	return tl.wal.write(lsn, b)
}

// finishElected makes the pulled WAL durable and records the elected term
// in the history: the donor's history then (term, start).
func (tl *Timeline) finishElected(term uint64, start pgdata.LSN, donor History) error {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if term != tl.ctl.Term {
		return ErrTermChanged
	}
	flush, err := tl.wal.sync()
	if err != nil {
		return err
	}
	tl.flush = flush
	if flush != start && !(flush == tl.wal.begin && start == 0) {
		return fmt.Errorf("after the election the WAL ends at %s, not at the elected start %s", flush, start)
	}
	h := append(historyUpTo(donor, start), TermStart{Term: term, Start: start})
	old := tl.ctl.History
	tl.ctl.History = h
	if err := tl.persistLocked(); err != nil {
		tl.ctl.History = old
		return err
	}
	tl.notifyLocked()
	tl.log.Info().Uint64("term", term).Stringer("start_lsn", start).Stringer("history", h).Msg("joined elected term")
	return nil
}

// setCompute records the compute of term. start is the LSN of the
// basebackup it started from: an empty timeline's WAL begins there.
//
// A term has one compute: the same one again is accepted (a retried
// command), another is refused. Streaming resumes at the flush LSN, a byte
// position that may lie inside a record the compute had not finished
// sending; only the same compute (the same PostgreSQL, even restarted,
// whose walsenders never send WAL it has not flushed) continues that
// record. A new compute starts from a basebackup at the start of a new
// term, which an election sets at the end of a complete record after
// truncating what lies above it (prepareElected): its WAL then continues
// the safekeepers' exactly.
func (tl *Timeline) setCompute(term uint64, start pgdata.LSN, connStr string) error {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if term != tl.ctl.Term || tl.ctl.History.LastTerm() != term {
		return fmt.Errorf("compute of term %d, but this safekeeper is in term %d with history %s: %w",
			term, tl.ctl.Term, tl.ctl.History, ErrTermChanged)
	}
	if tl.ctl.ComputeTerm == term && tl.ctl.Compute != "" && tl.ctl.Compute != connStr {
		return fmt.Errorf("term %d already has a compute (another one needs a new election): %w", term, ErrComputeSet)
	}
	termStart := tl.ctl.History[len(tl.ctl.History)-1].Start
	switch {
	case tl.flush == tl.wal.begin && tl.flush < start:
		if err := tl.wal.truncate(start); err != nil {
			return err
		}
		tl.flush = start
		if tl.ctl.CommitLSN < start {
			// The page server holds everything below the basebackup.
			tl.ctl.CommitLSN = start
		}
	case start != 0 && termStart != 0 && start != termStart:
		return fmt.Errorf("the compute starts at %s, but term %d starts at %s", start, term, termStart)
	}
	tl.ctl.ComputeTerm, tl.ctl.Compute = term, connStr
	if err := tl.persistLocked(); err != nil {
		return err
	}
	tl.notifyLocked()
	return nil
}

// computeToStream returns the compute this safekeeper should stream from,
// if it is of the current term.
func (tl *Timeline) computeToStream() (term uint64, connStr string, ok bool) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if tl.closed || tl.ctl.Compute == "" || tl.ctl.ComputeTerm != tl.ctl.Term || tl.ctl.History.LastTerm() != tl.ctl.Term {
		return 0, "", false
	}
	return tl.ctl.ComputeTerm, tl.ctl.Compute, true
}

// setStreamStop installs the function that stops the streaming of term; it
// returns false (and the caller must stop) if the term has moved on.
func (tl *Timeline) setStreamStop(term uint64, stop func()) bool {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if tl.closed || term != tl.ctl.Term {
		return false
	}
	tl.stopStreamLocked()
	tl.stopStream = stop
	return true
}
