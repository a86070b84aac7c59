package pageserver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"

	"github.com/zenithdb/zenith/pageserver/api"
	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/id"
)

// FailDeleteEnv names the environment variable of the page server process
// that kills it (SIGKILL, as kill -9 does) in the middle of a branch
// delete, for tests that the delete is crash-safe. Its value is where:
//
//	before-commit  after the timeline's WAL receiver stopped, before its
//	               directory is renamed (the delete must be undone)
//	after-commit   after the rename, before the branch name, the WAL and
//	               the layer files are removed (the delete must complete)
//
// Never set it outside tests.
const FailDeleteEnv = "ZENITH_PAGESERVER_FAIL_DELETE"

// deleteFailpoints are FailDeleteEnv's values.
var deleteFailpoints = []string{"before-commit", "after-commit"}

// deleteFailpointFromEnv reads FailDeleteEnv; "" if it is unset.
func deleteFailpointFromEnv() (string, error) {
	v := os.Getenv(FailDeleteEnv)
	if v != "" && !slices.Contains(deleteFailpoints, v) {
		return "", fmt.Errorf("%s=%q: want one of %s", FailDeleteEnv, v, strings.Join(deleteFailpoints, ", "))
	}
	return v, nil
}

// failpoint kills the process if FailDeleteEnv names point.
func (ts *tenants) failpoint(point string) {
	if ts.failDelete == point {
		ts.log.Warn().Str(FailDeleteEnv, point).Msg("killing the page server in the middle of a delete")
		_ = syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {} // the signal is on its way
	}
}

// deleteBranch deletes the timeline that ref (a branch name or a timeline
// id) names, with its branch name, its WAL and its layers. It refuses a
// timeline other branches start from (api.ErrHasChildren, naming them).
// The repository's rename is the commit point (repo.MarkTimelineDeleted);
// what follows it is finished at the next start if a crash cuts it short.
func (t *tenant) deleteBranch(ref string) (id.TimelineID, error) {
	tl, err := t.timeline(ref)
	if err != nil {
		return id.TimelineID{}, err
	}
	tid := tl.ID()
	if kids := t.children(tid); len(kids) > 0 {
		return tid, fmt.Errorf("branch %s of tenant %s: %w: %s (delete them first)", ref, t.id, api.ErrHasChildren, strings.Join(kids, ", "))
	}
	t.detachWAL(tid)
	t.ts.failpoint("before-commit")
	if err := t.tn.MarkTimelineDeleted(tid); err != nil {
		if errors.Is(err, repo.ErrTimelineHasChildren) {
			// A branch created since the check above.
			err = fmt.Errorf("branch %s of tenant %s: %w: %w", ref, t.id, api.ErrHasChildren, err)
		}
		if tl, lerr := t.tn.Timeline(tid); lerr == nil {
			t.attachWAL(context.Background(), tl)
		}
		return tid, err
	}
	t.ts.failpoint("after-commit")
	return tid, t.finishDelete(tid)
}

// children names the branches (or timeline ids, for unnamed ones) whose
// ancestor is tid.
func (t *tenant) children(tid id.TimelineID) []string {
	var kids []string
	for _, info := range t.tn.Timelines() {
		if info.Ancestor != tid {
			continue
		}
		if b, ok := t.branchOf(info.ID); ok {
			kids = append(kids, b.Name)
		} else {
			kids = append(kids, info.ID.String())
		}
	}
	slices.Sort(kids)
	return kids
}

// detachWAL stops a timeline's WAL receiver and closes its WAL store.
func (t *tenant) detachWAL(tid id.TimelineID) {
	t.mu.Lock()
	w, stop := t.wal[tid], t.stopWAL[tid]
	delete(t.wal, tid)
	delete(t.stopWAL, tid)
	t.mu.Unlock()
	if stop != nil {
		stop()
	}
	if w != nil {
		if err := w.Close(); err != nil {
			t.log.Warn().Err(err).Str("timeline", tid.String()).Msg("close WAL store of a deleted timeline")
		}
	}
}

// finishDelete removes what the page server keeps of a timeline the
// repository has marked deleted, each step idempotent: its branch names,
// its raw WAL, then the layer files and metadata.
func (t *tenant) finishDelete(tid id.TimelineID) error {
	t.mu.Lock()
	kept := slices.DeleteFunc(slices.Clone(t.branches), func(b Branch) bool { return b.Timeline == tid })
	var err error
	if len(kept) != len(t.branches) {
		if err = saveBranches(t.dir, kept); err == nil {
			t.branches = kept
		}
	}
	t.mu.Unlock()
	if err != nil {
		return fmt.Errorf("delete timeline %s: %w", tid, err)
	}
	t.forgetSize(tid)
	if err := os.RemoveAll(t.walDir(tid)); err != nil {
		return fmt.Errorf("delete timeline %s: remove its WAL: %w", tid, err)
	}
	return t.tn.RemoveDeletedTimeline(tid)
}

// finishDeletes finishes the deletes a crash interrupted after their
// commit point.
func (t *tenant) finishDeletes() error {
	tids, err := t.tn.DeletedTimelines()
	if err != nil {
		return err
	}
	for _, tid := range tids {
		t.log.Info().Str("timeline", tid.String()).Msg("finishing the delete of a timeline")
		if err := t.finishDelete(tid); err != nil {
			return err
		}
	}
	return nil
}

// walDir is the directory of a timeline's raw WAL.
func (t *tenant) walDir(tid id.TimelineID) string {
	return filepath.Join(t.dir, "wal", tid.String())
}

// delete deletes tenant tid with everything it holds: its WAL receivers
// stop, then the repository deletes its directory (branch names and raw
// WAL are in it).
func (ts *tenants) delete(tid id.TenantID) error {
	ts.mu.Lock()
	t, ok := ts.byID[tid]
	delete(ts.byID, tid)
	ts.mu.Unlock()
	if !ok {
		return fmt.Errorf("tenant %s: %w", tid, repo.ErrTenantNotFound)
	}
	t.stopAllWAL()
	return ts.repo.DeleteTenant(tid)
}
