package safekeeper

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/vfs"
)

// deletedSuffix marks a timeline directory whose deletion has begun: the
// rename to it is the commit point. The directory is then emptied but
// kept, as the timeline's tombstone: after a restart too, a peer's
// catch-up or a compute's late word must not create the timeline again
// (timeline ids are never reused; an empty directory per deleted
// timeline is what that costs). Open empties what a crash left.
const deletedSuffix = ".deleted"

// DeleteTimeline deletes a timeline's WAL and control file, once the
// page server has deleted the branch: it stops streaming from the
// compute, closes the timeline, renames its directory durably to
// "<id>.deleted" and empties it. found is false if the safekeeper has no
// such timeline (a branch whose computes never ran with safekeepers).
func (s *Safekeeper) DeleteTimeline(tenant id.TenantID, timeline id.TimelineID) (found bool, err error) {
	k := timelineKey{tenant, timeline}
	s.mu.Lock()
	tl := s.timelines[k]
	delete(s.timelines, k)
	s.deleted[k] = true
	s.mu.Unlock()
	if tl == nil {
		return false, nil
	}
	if err := tl.Close(); err != nil {
		s.log.Warn().Err(err).Str("tenant", tenant.String()).Str("timeline", timeline.String()).Msg("close a deleted timeline")
	}
	dir := s.timelineDir(tenant, timeline)
	if err := os.Rename(dir, dir+deletedSuffix); err != nil {
		return true, fmt.Errorf("delete timeline %s/%s: %w", tenant, timeline, err)
	}
	if err := vfs.SyncDir(vfs.Default, filepath.Dir(dir)); err != nil {
		return true, fmt.Errorf("delete timeline %s/%s: %w", tenant, timeline, err)
	}
	if err := emptyDir(dir + deletedSuffix); err != nil {
		return true, fmt.Errorf("delete timeline %s/%s: %w", tenant, timeline, err)
	}
	s.log.Info().Str("tenant", tenant.String()).Str("timeline", timeline.String()).Msg("deleted timeline")
	return true, nil
}

// openDeleted reads a tenant directory's entry name: if it is a deleted
// timeline's tombstone, it finishes emptying it (a crash may have left
// files) and returns the timeline, with ok set.
func openDeleted(tenantDir, name string) (timeline id.TimelineID, ok bool, err error) {
	base, marked := strings.CutSuffix(name, deletedSuffix)
	if !marked {
		return id.TimelineID{}, false, nil
	}
	if timeline, err = id.ParseTimelineID(base); err != nil {
		return id.TimelineID{}, false, nil
	}
	return timeline, true, emptyDir(filepath.Join(tenantDir, name))
}

// emptyDir removes everything in dir.
func emptyDir(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		if err := os.RemoveAll(filepath.Join(dir, e.Name())); err != nil {
			return err
		}
	}
	return nil
}
