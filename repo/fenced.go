package repo

import (
	"context"
	"strings"
	"time"
)

// fencedSweepInterval is how often, after the first upload of a
// generation, an attachment looks again for objects of older generations
// that nothing reads: a stale page server (an older attachment that does
// not know it was replaced) goes on uploading layers and indexes, which
// no attachment from now on ever reads.
const fencedSweepInterval = 10 * time.Minute

// sweepDue reports whether an attachment that last swept at last (zero:
// never, in this generation) sweeps now.
func (r *Repository) sweepDue(last time.Time) bool {
	return last.IsZero() || r.now().Sub(last) >= fencedSweepInterval
}

// fencedObjects returns, of objects (paths directly under prefix, as List
// returns them), those of a generation below gen that keep does not claim:
// keep gets the name an object stands for and its generation. Objects of
// gen and of newer generations are never returned, nor paths deeper than
// prefix.
func fencedObjects(objects []string, prefix string, gen Generation, keep func(name string, g Generation) bool) []string {
	var out []string
	for _, p := range objects {
		rest, ok := strings.CutPrefix(p, prefix)
		if !ok || rest == "" || strings.Contains(rest, "/") {
			continue
		}
		name, g := splitGeneration(rest)
		if g < gen && !keep(name, g) {
			out = append(out, p)
		}
	}
	return out
}

// removeFencedLocked removes the timeline's objects of older generations
// that its index does not list: the indexes of older generations (every
// attachment from now on reads this one's or a newer one's), the layers
// they alone listed, and layers of uploads that never reached an index.
// A layer of an older generation that the index lists stays. The caller
// holds u.mu, has uploaded (or found) this generation's index, and has
// checked that no newer generation was attached (mayDelete).
func (tl *Timeline) removeFencedLocked(ctx context.Context) error {
	repo := tl.tenant.repo
	u := &tl.upload
	prefix := remoteTimelinePrefix(tl.tenant.id, tl.id)
	objects, err := repo.remote.List(ctx, prefix)
	if err != nil {
		return err
	}
	fenced := fencedObjects(objects, prefix, tl.tenant.Generation(), func(name string, g Generation) bool {
		up, ok := u.uploaded[name]
		return ok && up.Generation == g
	})
	if err := repo.removeObjects(ctx, fenced); err != nil {
		return err
	}
	if len(fenced) > 0 {
		tl.log.Info().Int("objects", len(fenced)).Stringer("generation", tl.tenant.Generation()).
			Msg("removed remote objects of older generations that no index lists")
	}
	u.swept = repo.now()
	return nil
}

// removeFenced removes, when a sweep is due, the tenant's files (its
// settings and Config.TenantFiles) of older generations whose name this
// generation has uploaded, while no newer generation was attached.
func (tn *Tenant) removeFenced(ctx context.Context) error {
	repo := tn.repo
	u := &tn.upload
	u.mu.Lock()
	defer u.mu.Unlock()
	if !repo.sweepDue(u.swept) || len(u.uploaded) == 0 {
		return nil
	}
	if ok, err := tn.mayDelete(ctx); err != nil || !ok {
		return err
	}
	prefix := remoteTenantPrefix(tn.id)
	objects, err := repo.remote.List(ctx, prefix)
	if err != nil {
		return err
	}
	fenced := fencedObjects(objects, prefix, tn.Generation(), func(name string, _ Generation) bool {
		_, ours := u.uploaded[name]
		return !ours
	})
	if err := repo.removeObjects(ctx, fenced); err != nil {
		return err
	}
	if len(fenced) > 0 {
		tn.log.Info().Int("objects", len(fenced)).Stringer("generation", tn.Generation()).
			Msg("removed tenant files of older generations")
	}
	u.swept = repo.now()
	return nil
}

// removeObjects deletes the objects at paths, stopping at the first error.
func (r *Repository) removeObjects(ctx context.Context, paths []string) error {
	for _, p := range paths {
		if err := r.remote.Delete(ctx, p); err != nil {
			return err
		}
	}
	return nil
}
