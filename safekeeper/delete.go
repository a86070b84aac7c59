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
// rename to it is the commit point, and Open removes what a crash left.
const deletedSuffix = ".deleted"

// DeleteTimeline deletes a timeline's WAL and control file, once the
// page server has deleted the branch: it stops streaming from the
// compute, closes the timeline, renames its directory durably to
// "<id>.deleted" and removes it. found is false if the safekeeper has no
// such timeline (a branch whose computes never ran with safekeepers).
func (s *Safekeeper) DeleteTimeline(tenant id.TenantID, timeline id.TimelineID) (found bool, err error) {
	k := timelineKey{tenant, timeline}
	s.mu.Lock()
	tl := s.timelines[k]
	delete(s.timelines, k)
	if s.deleted == nil {
		s.deleted = map[timelineKey]bool{}
	}
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
	if err := os.RemoveAll(dir + deletedSuffix); err != nil {
		return true, fmt.Errorf("delete timeline %s/%s: %w", tenant, timeline, err)
	}
	s.log.Info().Str("tenant", tenant.String()).Str("timeline", timeline.String()).Msg("deleted timeline")
	return true, nil
}

// removeDeleted removes a timeline directory a crash left marked deleted;
// it reports whether name was one.
func removeDeleted(tenantDir, name string) (bool, error) {
	base, ok := strings.CutSuffix(name, deletedSuffix)
	if !ok {
		return false, nil
	}
	if _, err := id.ParseTimelineID(base); err != nil {
		return false, nil
	}
	return true, os.RemoveAll(filepath.Join(tenantDir, name))
}
