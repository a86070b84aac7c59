package repo_test

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"testing"

	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/vfs"
)

// TestDeleteTimeline deletes a branch with layer files: refused while it
// has a child, then gone from the tenant and from disk, and the ancestor
// still reads as before.
func TestDeleteTimeline(t *testing.T) {
	ctx := context.Background()
	mem := vfs.NewMem()
	f := newFixture(t, mem, mem)
	defer func() { f.r.Close() }()
	main := f.timeline(t)
	keys := []key.Key{blk(0), blk(1)}
	want := history(t, main, keys, 1, 3)
	if err := main.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	tn, _ := f.r.Tenant(f.tenant)
	child, grandchild := id.NewTimelineID(), id.NewTimelineID()
	ctl, err := tn.Branch(ctx, child, f.tl, 0x300)
	if err != nil {
		t.Fatal(err)
	}
	history(t, ctl, keys, 4, 6)
	if err := ctl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := tn.Branch(ctx, grandchild, child, 0x500); err != nil {
		t.Fatal(err)
	}
	history(t, ctl, keys, 7, 7) // in memory only
	if st := f.r.MemoryStats(); st.OpenLayerBytes == 0 {
		t.Fatal("no open layer bytes before the delete")
	}
	if err := tn.MarkTimelineDeleted(child); !errors.Is(err, repo.ErrTimelineHasChildren) {
		t.Fatalf("delete of a timeline with a child: %v, want ErrTimelineHasChildren", err)
	}
	for _, tid := range []id.TimelineID{grandchild, child} {
		if err := tn.MarkTimelineDeleted(tid); err != nil {
			t.Fatalf("delete %s: %v", tid, err)
		}
		if err := tn.RemoveDeletedTimeline(tid); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := tn.Timeline(child); !errors.Is(err, repo.ErrTimelineNotFound) {
		t.Errorf("Timeline of the deleted child: %v, want ErrTimelineNotFound", err)
	}
	if err := tn.MarkTimelineDeleted(child); !errors.Is(err, repo.ErrTimelineNotFound) {
		t.Errorf("second delete: %v, want ErrTimelineNotFound", err)
	}
	if got := timelineDirs(t, mem, f); !slices.Equal(got, []string{f.tl.String()}) {
		t.Errorf("timeline directories after the deletes: %v, want only main's", got)
	}
	for _, k := range keys {
		wantGet(t, main, k, 0x300, want[k])
	}
	if st := f.r.MemoryStats(); st.OpenLayerBytes != 0 {
		t.Errorf("open layer bytes after the delete = %d, want 0 (the child's layer went with it)", st.OpenLayerBytes)
	}
}

// TestDeleteTimelineCrash crashes right after the commit point and right
// before it: the first leaves a marked directory that loading ignores and
// the owner finishes, the second the whole timeline.
func TestDeleteTimelineCrash(t *testing.T) {
	ctx := context.Background()
	for _, marked := range []bool{true, false} {
		mem := vfs.NewMem()
		faulty := vfs.NewFaulty(mem)
		f := newFixture(t, faulty, mem)
		main := f.timeline(t)
		keys := []key.Key{blk(0)}
		want := history(t, main, keys, 1, 2)
		tn, _ := f.r.Tenant(f.tenant)
		child := id.NewTimelineID()
		ctl, err := tn.Branch(ctx, child, f.tl, 0x200)
		if err != nil {
			t.Fatal(err)
		}
		history(t, ctl, keys, 3, 4)
		if err := ctl.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if !marked {
			faulty.SetRule(vfs.FailOnce(vfs.OpRename, func(name string) bool { return filepath.Base(name) == child.String() }))
			if err := tn.MarkTimelineDeleted(child); !errors.Is(err, vfs.ErrInjected) {
				t.Fatalf("delete with a failing rename: %v, want ErrInjected", err)
			}
		} else if err := tn.MarkTimelineDeleted(child); err != nil {
			t.Fatal(err)
		}
		mem.Crash()
		f.r.Close()
		faulty.SetRule(nil)
		mem.Restart()
		f.r = mustOpen(t, f.cfg)
		tn, _ = f.r.Tenant(f.tenant)
		deleted, err := tn.DeletedTimelines()
		if err != nil {
			t.Fatal(err)
		}
		_, lerr := tn.Timeline(child)
		if marked {
			if !slices.Equal(deleted, []id.TimelineID{child}) || !errors.Is(lerr, repo.ErrTimelineNotFound) {
				t.Fatalf("after a crash past the commit point: deleted %v, load %v; want [%s] and not found", deleted, lerr, child)
			}
			if err := tn.RemoveDeletedTimeline(child); err != nil {
				t.Fatal(err)
			}
			if got := timelineDirs(t, mem, f); !slices.Equal(got, []string{f.tl.String()}) {
				t.Errorf("timeline directories: %v, want only main's", got)
			}
		} else {
			if len(deleted) != 0 || lerr != nil {
				t.Fatalf("after a crash before the commit point: deleted %v, load %v; want none and the timeline", deleted, lerr)
			}
			ctl, _ = tn.Timeline(child)
			wantGet(t, ctl, keys[0], 0x400, wantAt(keys[0], 4))
		}
		wantGet(t, f.timeline(t), keys[0], 0x200, want[keys[0]])
		f.r.Close()
	}
}

// TestDeleteTenant deletes a tenant; a crash after its commit point
// leaves a directory that the next Open removes.
func TestDeleteTenant(t *testing.T) {
	mem := vfs.NewMem()
	f := newFixture(t, mem, mem)
	history(t, f.timeline(t), []key.Key{blk(0)}, 1, 2)
	other := id.NewTenantID()
	if _, err := f.r.CreateTenant(other, smallTenantConfig()); err != nil {
		t.Fatal(err)
	}
	if err := f.r.DeleteTenant(f.tenant); err != nil {
		t.Fatal(err)
	}
	if _, err := f.r.Tenant(f.tenant); !errors.Is(err, repo.ErrTenantNotFound) {
		t.Errorf("Tenant after delete: %v, want ErrTenantNotFound", err)
	}
	if err := f.r.DeleteTenant(f.tenant); !errors.Is(err, repo.ErrTenantNotFound) {
		t.Errorf("second delete: %v, want ErrTenantNotFound", err)
	}
	ids, _ := f.r.Tenants()
	if !slices.Equal(ids, []id.TenantID{other}) {
		t.Errorf("tenants after delete: %v, want [%s]", ids, other)
	}
	f.r.Close()
	// A marked directory left by a crash goes when the tenants are listed.
	marked := filepath.Join("/work/tenants", other.String()+".deleted")
	if err := mem.Rename(filepath.Join("/work/tenants", other.String()), marked); err != nil {
		t.Fatal(err)
	}
	f.r = mustOpen(t, f.cfg)
	defer f.r.Close()
	if ids, err := f.r.Tenants(); err != nil || len(ids) != 0 {
		t.Errorf("Tenants() = %v, %v; want none", ids, err)
	}
	if names, _ := mem.List("/work/tenants"); len(names) != 0 {
		t.Errorf("tenants directory after Tenants(): %v, want empty", names)
	}
}

func timelineDirs(t *testing.T, fs vfs.FS, f *fixture) []string {
	t.Helper()
	names, err := fs.List(filepath.Join("/work/tenants", f.tenant.String(), "timelines"))
	if err != nil {
		t.Fatal(err)
	}
	slices.Sort(names)
	return names
}
