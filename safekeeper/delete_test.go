package safekeeper

import (
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/repo/id"
)

// TestDeleteTimeline deletes a timeline; a directory a crash left marked
// deleted is emptied at the next Open; neither timeline can be created
// again, also after a restart.
func TestDeleteTimeline(t *testing.T) {
	dir := t.TempDir()
	tenant, a, b := id.NewTenantID(), id.NewTimelineID(), id.NewTimelineID()
	sk, err := Open(Config{ID: 1, Dir: dir}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	for _, tl := range []id.TimelineID{a, b} {
		if _, err := sk.Timeline(tenant, tl, true); err != nil {
			t.Fatal(err)
		}
	}
	if found, err := sk.DeleteTimeline(tenant, a); err != nil || !found {
		t.Fatalf("DeleteTimeline = %v, %v; want found", found, err)
	}
	if found, err := sk.DeleteTimeline(tenant, a); err != nil || found {
		t.Errorf("second DeleteTimeline = %v, %v; want not found", found, err)
	}
	if tl, _ := sk.Timeline(tenant, a, false); tl != nil {
		t.Errorf("the deleted timeline is still served")
	}
	if _, err := os.Stat(filepath.Join(dir, tenant.String(), a.String())); !os.IsNotExist(err) {
		t.Errorf("the deleted timeline's directory: %v", err)
	}
	if _, err := sk.Timeline(tenant, a, true); !errors.Is(err, ErrTimelineDeleted) {
		t.Errorf("creating the deleted timeline again: %v, want ErrTimelineDeleted", err)
	}
	if err := sk.Close(); err != nil {
		t.Fatal(err)
	}
	// A crash after the rename: Open finishes the delete, b stays.
	bdir := filepath.Join(dir, tenant.String(), b.String())
	if err := os.Rename(bdir, bdir+deletedSuffix); err != nil {
		t.Fatal(err)
	}
	sk, err = Open(Config{ID: 1, Dir: dir}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer sk.Close()
	if entries, err := os.ReadDir(bdir + deletedSuffix); err != nil || len(entries) != 0 {
		t.Errorf("a marked directory after Open holds %d entries (%v), want an empty tombstone", len(entries), err)
	}
	if n := len(sk.Timelines()); n != 0 {
		t.Errorf("Open loaded %d timelines, want none", n)
	}
	for _, tl := range []id.TimelineID{a, b} {
		if _, err := sk.Timeline(tenant, tl, true); !errors.Is(err, ErrTimelineDeleted) {
			t.Errorf("creating deleted timeline %s after a restart: %v, want ErrTimelineDeleted", tl, err)
		}
	}
}
