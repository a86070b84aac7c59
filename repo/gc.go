package repo

import (
	"context"
	"fmt"
	"time"

	"github.com/zenithdb/zenith/repo/layer"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// GC advances the timeline's GC cut-off and removes the layer files that no
// read can need any more. The cut-off is the lowest of: the last record
// LSN minus the tenant's GC horizon, the last LSN flushed before the PITR
// window, and the disk-consistent LSN; it never moves back. A layer file is
// removed when, for the cut-off and for the branch point of every child
// timeline at or above the layer's start, images newer than the layer's
// values and not newer than that point cover its whole key range.
func (tl *Timeline) GC(ctx context.Context) error {
	tl.compactMu.Lock()
	defer tl.compactMu.Unlock()
	if err := ctx.Err(); err != nil {
		return err
	}
	conf := tl.tenant.Config()
	tl.mu.RLock()
	last, disk, old := tl.last, tl.state.diskConsistentLSN, tl.state.gcCutoff
	times := tl.state.flushTimes
	tl.mu.RUnlock()
	var horizon pgdata.LSN
	if h := pgdata.LSN(conf.GCHorizon); last > h {
		horizon = last - h
	}
	cutoff := max(old, min(horizon, pitrCutoff(times, tl.tenant.repo.now(), time.Duration(conf.PITRInterval)), disk))

	// Hold the tenant while choosing, so no branch is created below the
	// new cut-off or between reading the branch points and committing.
	tn := tl.tenant
	tn.mu.Lock()
	defer tn.mu.Unlock()
	points := append(tn.branchPointsLocked(tl.id), cutoff)
	files := tl.files()
	var remove []layer.Layer
	for _, l := range files.Layers() {
		d := l.Desc()
		needed := false
		for _, p := range points {
			if d.LSNs.Start <= p && !files.CoveredByImages(d.Keys, supersededFrom(d), p) {
				needed = true
				break
			}
		}
		// A layer above the cut-off is needed by reads at its own LSNs.
		if !needed && supersededFrom(d) <= cutoff {
			remove = append(remove, l)
		}
	}
	if cutoff == old && len(remove) == 0 {
		return nil
	}
	if _, err := tl.replaceLayers(nil, remove, &cutoff); err != nil {
		return fmt.Errorf("GC of timeline %s: %w", tl.id, err)
	}
	tl.log.Info().Stringer("gc_cutoff", cutoff).Int("removed_layers", len(remove)).Msg("GC")
	return nil
}
