package repo_test

import (
	"context"
	"errors"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/value"
	"github.com/zenithdb/zenith/repo/vfs"
)

func img(s string) value.Value { return value.Image([]byte(s)) }
func rec(s string) value.Value { return value.WALRecord([]byte(s), false) }
func ini(s string) value.Value { return value.WALRecord([]byte(s), true) }

// TestBasicLifecycle follows a timeline through ingest, flush, restart and
// a branch, reading what a page server would read at each point.
func TestBasicLifecycle(t *testing.T) {
	ctx := context.Background()
	fs := vfs.NewMem()
	r := mustOpen(t, testConfig(fs))
	tid, main := id.NewTenantID(), id.NewTimelineID()
	_, tl := createTimeline(t, r, tid, main, 0)
	put(t, tl, 0x10, map[key.Key]value.Value{blk(0): img("A"), blk(1): ini("i")})
	put(t, tl, 0x20, map[key.Key]value.Value{blk(0): rec("b")})
	put(t, tl, 0x30, map[key.Key]value.Value{blk(0): rec("c"), blk(1): rec("j")})
	if err := tl.PutRelSize(testRel, pgdata.ForkMain, 0x38, 2); err != nil {
		t.Fatal(err)
	}
	if err := tl.FinishWrite(0x38, 0x30); err != nil {
		t.Fatal(err)
	}
	check := func(tl *repo.Timeline) {
		t.Helper()
		wantGet(t, tl, blk(0), 0x10, "A")
		wantGet(t, tl, blk(0), 0x2F, "Ab")
		wantGet(t, tl, blk(0), 0x38, "Abc")
		wantGet(t, tl, blk(1), 0x30, "ij")
		if _, err := tl.Get(ctx, blk(2), 0x38); !errors.Is(err, repo.ErrKeyNotFound) {
			t.Errorf("Get of a key never written: error = %v, want ErrKeyNotFound", err)
		}
		if n, err := tl.RelSize(ctx, testRel, pgdata.ForkMain, 0x38); err != nil || n != 2 {
			t.Errorf("RelSize = %d, %v; want 2", n, err)
		}
	}
	check(tl)
	if _, err := tl.Get(ctx, blk(0), 0x39); !errors.Is(err, repo.ErrLSNNotReached) {
		t.Errorf("Get above the last record: error = %v, want ErrLSNNotReached", err)
	}
	if err := tl.Put(blk(0), 0x38, rec("x")); !errors.Is(err, repo.ErrLSNOrder) {
		t.Errorf("Put at the last record LSN: error = %v, want ErrLSNOrder", err)
	}
	if err := tl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if got := tl.DiskConsistentLSN(); got != 0x38 {
		t.Errorf("DiskConsistentLSN after flush = %v, want 0/38", got)
	}
	check(tl)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}

	r = mustOpen(t, testConfig(fs))
	defer r.Close()
	tn, err := r.Tenant(tid)
	if err != nil {
		t.Fatal(err)
	}
	if tl, err = tn.Timeline(main); err != nil {
		t.Fatal(err)
	}
	if got, want := tl.LastRecordLSN(), pgdata.LSN(0x38); got != want {
		t.Errorf("LastRecordLSN after restart = %v, want %v", got, want)
	}
	if got, want := tl.PrevRecordLSN(), pgdata.LSN(0x30); got != want {
		t.Errorf("PrevRecordLSN after restart = %v, want %v", got, want)
	}
	check(tl)

	child := id.NewTimelineID()
	br, err := tn.Branch(ctx, child, main, 0x2F)
	if err != nil {
		t.Fatal(err)
	}
	put(t, br, 0x40, map[key.Key]value.Value{blk(0): rec("z")})
	wantGet(t, br, blk(0), 0x40, "Abz")
	wantGet(t, br, blk(1), 0x40, "i")
	wantGet(t, tl, blk(0), 0x38, "Abc")
	if a, lsn := br.Ancestor(); a != main || lsn != 0x2F {
		t.Errorf("Ancestor() = %v %v, want %v 0/2F", a, lsn, main)
	}
	if _, err := br.Get(ctx, blk(0), 0x2E); !errors.Is(err, repo.ErrBelowGCCutoff) {
		t.Errorf("Get below the branch point: error = %v, want ErrBelowGCCutoff", err)
	}
	if _, err := tn.Branch(ctx, id.NewTimelineID(), main, 0x39); !errors.Is(err, repo.ErrBranchAfterLastLSN) {
		t.Errorf("Branch after the last LSN: error = %v, want ErrBranchAfterLastLSN", err)
	}
	if _, err := tn.Branch(ctx, child, main, 0x30); !errors.Is(err, repo.ErrTimelineExists) {
		t.Errorf("Branch to an existing id: error = %v, want ErrTimelineExists", err)
	}
	if _, err := tn.Timeline(id.NewTimelineID()); !errors.Is(err, repo.ErrTimelineNotFound) {
		t.Errorf("unknown timeline: error = %v, want ErrTimelineNotFound", err)
	}
	if _, err := r.Tenant(id.NewTenantID()); !errors.Is(err, repo.ErrTenantNotFound) {
		t.Errorf("unknown tenant: error = %v, want ErrTenantNotFound", err)
	}
	if _, err := r.CreateTenant(tid, smallTenantConfig()); !errors.Is(err, repo.ErrTenantExists) {
		t.Errorf("CreateTenant twice: error = %v, want ErrTenantExists", err)
	}
	if ids, err := r.Tenants(); err != nil || len(ids) != 1 || ids[0] != tid {
		t.Errorf("Tenants() = %v, %v; want [%v]", ids, err, tid)
	}
	if err := br.Put(blk(0), 0x48, value.Value{Kind: 9}); !errors.Is(err, value.ErrMalformed) {
		t.Errorf("Put of a malformed value: error = %v, want ErrMalformed", err)
	}
}

// TestLazyLoading checks that opening a repository reads no tenant, that
// a tenant reads its timelines' metadata but no timeline directory, and
// that a timeline's directory is read at its first use.
func TestLazyLoading(t *testing.T) {
	mem := vfs.NewMem()
	faulty := vfs.NewFaulty(mem)
	f := newFixture(t, faulty, mem)
	tl := f.timeline(t)
	put(t, tl, 0x100, map[key.Key]value.Value{blk(0): img("a")})
	other := id.NewTimelineID()
	tn, _ := f.r.Tenant(f.tenant)
	if _, err := tn.Branch(context.Background(), other, f.tl, 0); err != nil {
		t.Fatal(err)
	}
	if err := f.r.Close(); err != nil {
		t.Fatal(err)
	}
	var listed []string
	faulty.SetRule(func(op vfs.Op, name string) error {
		if op == vfs.OpList {
			listed = append(listed, name)
		}
		return nil
	})
	f.r = mustOpen(t, f.cfg)
	defer f.r.Close()
	if len(listed) != 0 {
		t.Errorf("Open listed %v, want nothing", listed)
	}
	tn, err := f.r.Tenant(f.tenant)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"/work/tenants/" + f.tenant.String() + "/timelines"}; len(listed) != 1 || listed[0] != want[0] {
		t.Errorf("loading the tenant listed %v, want %v", listed, want)
	}
	if infos := tn.Timelines(); len(infos) != 2 {
		t.Errorf("Timelines() = %v, want two", infos)
	}
	listed = nil
	if _, err := tn.Timeline(other); err != nil {
		t.Fatal(err)
	}
	// The branch loads its ancestor too: both directories, nothing else.
	if len(listed) != 2 {
		t.Errorf("loading a branch listed %v, want its directory and its ancestor's", listed)
	}
}

// TestLoadRemovesLeftovers puts what an interrupted flush or compaction
// leaves (a temporary file, a layer file the metadata does not list) into
// a timeline directory: loading removes them and keeps everything else.
func TestLoadRemovesLeftovers(t *testing.T) {
	mem := vfs.NewMem()
	f := newFixture(t, mem, mem)
	tl := f.timeline(t)
	want := history(t, tl, []key.Key{blk(0)}, 1, 3)
	if err := tl.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := f.r.Close(); err != nil {
		t.Fatal(err)
	}
	layers := layerFiles(t, mem, f.dir())
	stray := filepath.Join(f.dir(), key.Min.Hex()+"-"+key.Max.Hex()+"__0000000000000401-0000000000000501")
	for _, name := range []string{stray, filepath.Join(f.dir(), "0123abcd.tmp"), filepath.Join(f.dir(), "notes.txt")} {
		w, err := mem.Create(name)
		if err != nil {
			t.Fatal(err)
		}
		w.Close()
	}
	f.r = mustOpen(t, f.cfg)
	defer f.r.Close()
	tl = f.timeline(t)
	wantGet(t, tl, blk(0), 0x300, want[blk(0)])
	names, _ := mem.List(f.dir())
	sort.Strings(names)
	wantNames := []string{filepath.Base(layers[0]), "metadata", "notes.txt"}
	sort.Strings(wantNames)
	if strings.Join(names, " ") != strings.Join(wantNames, " ") {
		t.Errorf("timeline directory after load: %v, want %v", names, wantNames)
	}
}
