package pageserver

import (
	"context"
	"fmt"
	"time"

	"github.com/zenithdb/zenith/pageserver/api"
	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// Where a branch or a basebackup may start: at a record boundary of a
// timeline's history (its last record, its start, or the end of a record
// in its stored WAL or its ancestors'), or at the last commit before a
// point in time.

// start returns where tl's own history starts: its branch point, or for
// a root timeline the import LSN its branch records.
func (t *tenant) start(tl *repo.Timeline) pgdata.LSN {
	if a, at := tl.Ancestor(); !a.IsZero() {
		return at
	}
	if b, ok := t.branchOf(tl.ID()); ok {
		return b.Start
	}
	return tl.GCCutoff()
}

// recordBefore checks that a record of tl's history ends at lsn and
// returns that record's start, or 0 where it is not known (at the start
// of a timeline whose earlier WAL the page server never had).
// api.ErrNotRecordBoundary if no record ends at lsn.
func (t *tenant) recordBefore(ctx context.Context, tl *repo.Timeline, lsn pgdata.LSN) (pgdata.LSN, error) {
	for {
		if lsn == tl.LastRecordLSN() {
			return tl.PrevRecordLSN(), nil
		}
		if w := t.walOf(tl.ID()); w != nil {
			if prev, err := w.PrevRecord(ctx, lsn); err == nil {
				return prev, nil
			}
		}
		start := t.start(tl)
		a, at := tl.Ancestor()
		switch {
		case lsn == start && a.IsZero():
			return 0, nil
		case lsn <= at && !a.IsZero():
			// The ancestor's history, which ends at the branch point.
			anc, err := t.tn.Timeline(a)
			if err != nil {
				return 0, err
			}
			if lsn == at {
				if w := t.walOf(a); w != nil {
					if prev, err := w.PrevRecord(ctx, lsn); err == nil {
						return prev, nil
					}
				}
				if lsn == anc.LastRecordLSN() {
					return anc.PrevRecordLSN(), nil
				}
				return 0, nil
			}
			tl = anc
		default:
			return 0, fmt.Errorf("%v on timeline %s: %w", lsn, tl.ID(), api.ErrNotRecordBoundary)
		}
	}
}

// lsnForTime returns the branch point for a branch of tl "as of" time at:
// the end of the last commit at or before at, found in tl's WAL, else in
// its ancestors' up to their branch points. With no commit at all before
// at, it is the start of the root timeline (its import).
func (t *tenant) lsnForTime(ctx context.Context, tl *repo.Timeline, at time.Time) (pgdata.LSN, error) {
	orig := tl
	for {
		if w := t.walOf(tl.ID()); w != nil {
			lsn, ok, err := w.FindLSNForTime(ctx, at)
			if err != nil {
				return 0, err
			}
			if ok && lsn >= t.start(tl) {
				if tl != orig {
					// A branch of orig at a point of its ancestor's history.
					if _, bp := orig.Ancestor(); lsn > bp {
						lsn = bp
					}
				}
				return min(lsn, orig.LastRecordLSN()), nil
			}
		}
		a, _ := tl.Ancestor()
		if a.IsZero() {
			return t.start(tl), nil
		}
		anc, err := t.tn.Timeline(a)
		if err != nil {
			return 0, err
		}
		tl = anc
	}
}
