package repo_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/tomlconf"
	"github.com/zenithdb/zenith/repo/vfs"
)

// TestSetTenantConfig changes a tenant's retention: a bad value is
// refused naming the field, the new one survives a reopen, and GC uses it
// (a shorter horizon moves the cut-off up, and a branch below it is then
// refused naming the cut-off).
func TestSetTenantConfig(t *testing.T) {
	ctx := context.Background()
	mem := vfs.NewMem()
	f := newFixture(t, mem, mem)
	defer func() { f.r.Close() }()
	tn, _ := f.r.Tenant(f.tenant)
	conf := tn.Config()
	conf.GCHorizon = 1 << 40
	if err := tn.SetConfig(conf); err != nil {
		t.Fatal(err)
	}
	tl := f.timeline(t)
	history(t, tl, []key.Key{blk(0)}, 1, 8)
	if err := tl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tl.GC(ctx); err != nil {
		t.Fatal(err)
	}
	if got := tl.GCCutoff(); got != 0 {
		t.Fatalf("GC cut-off with a 1 TiB horizon = %v, want 0/0", got)
	}
	bad := conf
	bad.PITRInterval = tomlconf.Duration(-time.Hour)
	if err := tn.SetConfig(bad); err == nil || !strings.Contains(err.Error(), "pitr_interval") {
		t.Errorf("SetConfig with a negative pitr_interval: %v, want an error naming it", err)
	}
	conf.GCHorizon = 0x200
	if err := tn.SetConfig(conf); err != nil {
		t.Fatal(err)
	}
	f.r.Close()
	f.r = mustOpen(t, f.cfg)
	tn, _ = f.r.Tenant(f.tenant)
	if got := tn.Config().GCHorizon; got != 0x200 {
		t.Fatalf("gc_horizon after a reopen = %d, want 512", got)
	}
	tl = f.timeline(t)
	if err := tl.GC(ctx); err != nil {
		t.Fatal(err)
	}
	if got := tl.GCCutoff(); got != 0x600 {
		t.Fatalf("GC cut-off with a 512-byte horizon at 0/800 = %v, want 0/600", got)
	}
	_, err := tn.Branch(ctx, id.NewTimelineID(), f.tl, 0x300)
	if !errors.Is(err, repo.ErrBranchBeforeGCCutoff) || !strings.Contains(err.Error(), "GC cut-off 0/600") {
		t.Errorf("branch at 0/300 below the cut-off: %v, want ErrBranchBeforeGCCutoff naming 0/600", err)
	}
}
