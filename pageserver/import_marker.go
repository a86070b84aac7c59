package pageserver

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/vfs"
)

// importMarkerPrefix starts the name of the file, in the tenant's
// directory, that marks a timeline as an import in progress: the import's
// timeline exists before its branch name does, and a crash in between
// (kill -9 of the page server in the middle of a big import) would leave
// a nameless half-timeline behind. The marker is written (durably) before
// the timeline is created and removed once the branch is named; a marker
// found at start is an interrupted import, whose timeline is deleted.
const importMarkerPrefix = "importing-"

// markImport records that timeline tid of the tenant in tenantDir is
// being imported.
func markImport(tenantDir string, tid id.TimelineID) error {
	if _, err := vfs.WriteFileAtomic(vfs.Default, filepath.Join(tenantDir, importMarkerPrefix+tid.String()), nil, 0o600); err != nil {
		return fmt.Errorf("mark the import of timeline %s: %w", tid, err)
	}
	return nil
}

// unmarkImport removes markImport's marker.
func unmarkImport(tenantDir string, tid id.TimelineID) error {
	if err := os.Remove(filepath.Join(tenantDir, importMarkerPrefix+tid.String())); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("unmark the import of timeline %s: %w", tid, err)
	}
	return vfs.SyncDir(vfs.Default, tenantDir)
}

// finishInterruptedImports deletes the timeline of every import that a
// crash interrupted before its branch was named (see importMarkerPrefix);
// one that got its name is kept.
func (t *tenant) finishInterruptedImports() error {
	entries, err := os.ReadDir(t.dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		rest, ok := strings.CutPrefix(e.Name(), importMarkerPrefix)
		if !ok || strings.HasSuffix(rest, ".tmp") {
			continue
		}
		tid, err := id.ParseTimelineID(rest)
		if err != nil {
			return fmt.Errorf("tenant %s: import marker %s: %w", t.id, e.Name(), err)
		}
		_, named := t.branchOf(tid)
		exists := slices.ContainsFunc(t.tn.Timelines(), func(i repo.TimelineInfo) bool { return i.ID == tid })
		switch {
		case !named && exists:
			t.log.Warn().Str("timeline", tid.String()).Msg("an import was interrupted: deleting its timeline")
			if err := t.tn.MarkTimelineDeleted(tid); err != nil {
				return fmt.Errorf("tenant %s: delete the timeline of an interrupted import: %w", t.id, err)
			}
			if err := t.finishDelete(tid); err != nil {
				return err
			}
		case !named:
			// Killed before its metadata was written: the repository
			// ignores the directory, which nothing else would remove.
			dir := filepath.Join(t.dir, "timelines", tid.String())
			if err := os.RemoveAll(dir); err != nil {
				return fmt.Errorf("tenant %s: remove the directory of an interrupted import: %w", t.id, err)
			}
		}
		if err := unmarkImport(t.dir, tid); err != nil {
			return err
		}
	}
	return nil
}
