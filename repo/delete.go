package repo

import (
	"context"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/vfs"
)

// deletedSuffix marks a timeline or tenant directory whose deletion has
// begun. Renaming the directory to it is the deletion's commit point: a
// crash before the rename leaves the timeline whole, a crash after it
// leaves a directory that is never loaded again and whose removal is
// finished at the next start.
const deletedSuffix = ".deleted"

// MarkTimelineDeleted begins the deletion of timeline tid: it refuses a
// timeline that has child branches (ErrTimelineHasChildren: they read
// through it), stops the timeline's writes, drops what it holds in memory
// and closes its files, then renames its directory durably to
// "<id>.deleted", the commit point. From then on the timeline is gone from
// the tenant; RemoveDeletedTimeline removes its files. Reads through a
// *Timeline obtained before fail.
func (tn *Tenant) MarkTimelineDeleted(tid id.TimelineID) error {
	e, err := tn.beginDelete(tid)
	if err != nil {
		return err
	}
	// Not under tn.mu: GC takes it while it holds the timeline's
	// compaction lock, which detach waits for.
	if e.tl != nil {
		if err := e.tl.detach(); err != nil {
			tn.mu.Lock()
			e.deleting = false
			tn.mu.Unlock()
			return fmt.Errorf("delete timeline %s: %w", tid, err)
		}
	}
	tn.mu.Lock()
	defer tn.mu.Unlock()
	fs := tn.repo.fs
	dir := tn.timelineDir(tid)
	if err := fs.Rename(dir, dir+deletedSuffix); err != nil {
		// Its files are closed: loading it again is the way back.
		e.tl, e.deleting = nil, false
		return fmt.Errorf("delete timeline %s: %w", tid, err)
	}
	delete(tn.timelines, tid)
	if err := vfs.SyncDir(fs, tn.timelinesDir()); err != nil {
		return fmt.Errorf("delete timeline %s: %w", tid, err)
	}
	tn.log.Info().Str("timeline", tid.String()).Msg("timeline marked deleted")
	return nil
}

// beginDelete checks that timeline tid exists and has no children, and
// marks it as being deleted so that no branch is created from it.
func (tn *Tenant) beginDelete(tid id.TimelineID) (*timelineEntry, error) {
	tn.mu.Lock()
	defer tn.mu.Unlock()
	e, ok := tn.timelines[tid]
	if !ok || e.deleting {
		return nil, fmt.Errorf("timeline %s of tenant %s: %w", tid, tn.id, ErrTimelineNotFound)
	}
	var children []string
	for cid, c := range tn.timelines {
		if c.meta.Ancestor != nil && *c.meta.Ancestor == tid {
			children = append(children, cid.String())
		}
	}
	if len(children) > 0 {
		slices.Sort(children)
		return nil, fmt.Errorf("timeline %s of tenant %s has child timelines %s: %w", tid, tn.id, strings.Join(children, ", "), ErrTimelineHasChildren)
	}
	e.deleting = true
	return e, nil
}

// RemoveDeletedTimeline removes the files of a timeline that
// MarkTimelineDeleted marked (or that a crash left marked: see
// DeletedTimelines). Removing one that is not there is not an error.
func (tn *Tenant) RemoveDeletedTimeline(tid id.TimelineID) error {
	fs := tn.repo.fs
	// Remote storage first: while the marked directory is here, a
	// restart finishes this, and restore leaves the timeline alone.
	if err := tn.repo.deleteRemote(tn.id, tn.Generation(), remoteTimelinePrefix(tn.ID(), tid), indexFile); err != nil {
		return fmt.Errorf("delete timeline %s: %w", tid, err)
	}
	if err := vfs.RemoveAll(fs, tn.timelineDir(tid)+deletedSuffix); err != nil {
		return fmt.Errorf("delete timeline %s: %w", tid, err)
	}
	if err := vfs.SyncDir(fs, tn.timelinesDir()); err != nil {
		return fmt.Errorf("delete timeline %s: %w", tid, err)
	}
	tn.log.Info().Str("timeline", tid.String()).Msg("deleted timeline")
	return nil
}

// DeletedTimelines lists the timelines marked deleted whose files are
// still there: deletions a crash interrupted after their commit point,
// for the owner to finish (its own state of them, then
// RemoveDeletedTimeline).
func (tn *Tenant) DeletedTimelines() ([]id.TimelineID, error) {
	names, err := tn.repo.fs.List(tn.timelinesDir())
	if err != nil {
		return nil, fmt.Errorf("tenant %s: list timelines: %w", tn.id, err)
	}
	var ids []id.TimelineID
	for _, n := range names {
		base, ok := strings.CutSuffix(n, deletedSuffix)
		if !ok {
			continue
		}
		if tid, err := id.ParseTimelineID(base); err == nil {
			ids = append(ids, tid)
		}
	}
	slices.SortFunc(ids, func(a, b id.TimelineID) int { return strings.Compare(a.String(), b.String()) })
	return ids, nil
}

// detach stops a timeline being deleted: it waits for a flush, compaction
// or GC under way, drops the in-memory layers (their WAL goes with the
// timeline) and closes the layer files.
func (tl *Timeline) detach() error {
	tl.writeMu.Lock()
	defer tl.writeMu.Unlock()
	tl.flushMu.Lock()
	defer tl.flushMu.Unlock()
	tl.compactMu.Lock()
	defer tl.compactMu.Unlock()
	mem := &tl.tenant.repo.mem
	tl.mu.Lock()
	mem.open.Add(-tl.open.Size())
	for _, fr := range tl.frozen {
		mem.frozen.Add(-fr.mem.Size())
	}
	tl.frozen = nil
	tl.pending = nil
	tl.mu.Unlock()
	return tl.close()
}

// closeTenant stops every timeline of tn, already out of the repository's
// map (no new ones start), and renames its directory to dir+suffix
// durably: the commit point of a delete or a detach. It returns dir.
func (r *Repository) closeTenant(tn *Tenant, suffix string) (string, error) {
	tn.mu.Lock()
	var tls []*Timeline
	for _, e := range tn.timelines {
		e.deleting = true
		if e.tl != nil {
			tls = append(tls, e.tl)
		}
	}
	tn.mu.Unlock()
	for _, tl := range tls {
		if err := tl.detach(); err != nil {
			return "", err
		}
	}
	dir := r.tenantDir(tn.ID())
	if err := r.fs.Rename(dir, dir+suffix); err != nil {
		return "", err
	}
	return dir, vfs.SyncDir(r.fs, r.tenantsDir())
}

// DeleteTenant deletes a tenant and everything in its directory: it
// closes its timelines, renames the directory durably to
// "<id>.deleted" (the commit point: Tenants removes what a crash left
// after it), then removes it.
func (r *Repository) DeleteTenant(tid id.TenantID) error {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return ErrClosed
	}
	tn, err := r.tenantLocked(tid)
	if err == nil {
		// Gone from the repository first, so the loops leave it alone.
		delete(r.tenants, tid)
	}
	r.mu.Unlock()
	if err != nil {
		return err
	}
	dir, err := r.closeTenant(tn, deletedSuffix)
	if err != nil {
		return fmt.Errorf("delete tenant %s: %w", tid, err)
	}
	r.log.Info().Str("tenant", tid.String()).Msg("tenant marked deleted")
	return r.removeDeleted(dir + deletedSuffix)
}

// removeDeleted finishes the delete of a tenant whose directory was
// renamed to dir ("<id>.deleted"): its objects in remote storage, then
// the directory.
func (r *Repository) removeDeleted(dir string) error {
	if tid, err := id.ParseTenantID(strings.TrimSuffix(filepath.Base(dir), deletedSuffix)); err == nil {
		gen, err := readGeneration(r.fs, dir)
		if err != nil {
			return err
		}
		if err := r.deleteRemote(tid, gen, remoteTenantPrefix(tid), tenantConfigFile); err != nil {
			return err
		}
	}
	if err := vfs.RemoveAll(r.fs, dir); err != nil {
		return err
	}
	if err := vfs.SyncDir(r.fs, filepath.Dir(dir)); err != nil {
		return err
	}
	r.log.Info().Str("dir", dir).Msg("deleted")
	return nil
}

// deleteRemote removes the objects under prefix from remote storage (if
// there is one): first, the objects whose presence makes an attach bring
// the rest back (a timeline's indexes, a tenant's settings, of every
// generation), then the rest. A page server whose generation gen of the
// tenant is no longer the newest deletes nothing: the objects belong to
// the newer attachment.
func (r *Repository) deleteRemote(tid id.TenantID, gen Generation, prefix, first string) error {
	if r.remote == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	newest, err := r.newestGeneration(ctx, remoteTenantPrefix(tid))
	if err != nil {
		return fmt.Errorf("remote storage: %w", err)
	}
	if newest > gen {
		r.log.Warn().Str("tenant", tid.String()).Stringer("generation", gen).Stringer("newer_generation", newest).
			Str("prefix", prefix).Msg("a newer attachment of the tenant exists: its remote objects stay")
		return nil
	}
	objects, err := r.remote.List(ctx, prefix)
	if err != nil {
		return fmt.Errorf("remote storage: list %s: %w", prefix, err)
	}
	slices.SortStableFunc(objects, func(a, b string) int {
		fa, fb := isFirstObject(a, prefix, first), isFirstObject(b, prefix, first)
		switch {
		case fa && !fb:
			return -1
		case fb && !fa:
			return 1
		}
		return 0
	})
	for _, p := range objects {
		if err := r.remote.Delete(ctx, p); err != nil {
			return fmt.Errorf("remote storage: delete %s: %w", p, err)
		}
	}
	return nil
}

// isFirstObject reports whether the object at p is first (of any
// generation) directly under prefix.
func isFirstObject(p, prefix, first string) bool {
	rest, ok := strings.CutPrefix(p, prefix)
	if !ok || strings.Contains(rest, "/") {
		return false
	}
	name, _ := splitGeneration(rest)
	return name == first
}
