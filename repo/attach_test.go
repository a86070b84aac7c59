package repo_test

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/value"
	"github.com/zenithdb/zenith/repo/vfs"
)

// TestGenerationFencing has two page servers that both believe they hold
// a tenant: A at generation 1, then B attached at generation 2 while A
// goes on ingesting (different records), flushing, compacting, collecting
// garbage, uploading and finally deleting the tenant. None of it may
// damage B's state: a third page server attached at generation 3 reads
// exactly what B uploaded, and every object B uploaded is still there,
// byte for byte.
func TestGenerationFencing(t *testing.T) {
	ctx := context.Background()
	s := newRemoteSetup()
	a := s.open(t, nil)
	defer a.Close()
	tid, main := id.NewTenantID(), id.NewTimelineID()
	tnA, err := a.CreateTenant(tid, smallTenantConfig())
	if err != nil {
		t.Fatal(err)
	}
	tlA, err := tnA.CreateTimeline(main, 0xF0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := a.AttachTenant(ctx, tid, 1); err != nil {
		t.Fatal(err)
	}
	writeHistory(t, tlA, 0, 40)
	if err := tnA.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tnA.Upload(ctx); err != nil {
		t.Fatal(err)
	}

	b := s.open(t, nil)
	defer b.Close()
	tlB := attachTimeline(t, b, tid, 2, main)
	writeHistory(t, tlB, 40, 24)
	if err := tlB.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	tnB, _ := b.Tenant(tid)
	if err := tnB.Upload(ctx); err != nil {
		t.Fatal(err)
	}
	end := tlB.RemoteConsistentLSN()
	if end != tlB.LastRecordLSN() {
		t.Fatalf("B's remote-consistent LSN %v, want its last record %v", end, tlB.LastRecordLSN())
	}
	want := readAll(t, tlB, end)
	before := objectsOf(t, s, tid, 2)
	if len(before) == 0 {
		t.Fatal("B uploaded no object of generation 2")
	}

	// A, the zombie, writes records of its own over the same LSNs and
	// works as if it still held the tenant.
	for i := 40; i < 100; i++ {
		put(t, tlA, pgdata.LSN(0x100+i*0x10), map[key.Key]value.Value{blk(uint32(i % 4)): ini("Z")})
		if i%8 == 7 {
			if err := tlA.Flush(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := tnA.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tnA.GC(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tnA.Upload(ctx); err != nil {
		t.Fatal(err)
	}
	if err := a.DeleteTenant(tid); err != nil {
		t.Fatal(err)
	}
	if after := objectsOf(t, s, tid, 2); !equalObjects(before, after) {
		t.Errorf("generation 2's objects changed under the zombie of generation 1:\nbefore %v\nafter  %v", keys(before), keys(after))
	}

	c := s.open(t, nil)
	defer c.Close()
	tlC := attachTimeline(t, c, tid, 3, main)
	if got := tlC.DiskConsistentLSN(); got != end {
		t.Errorf("attached at generation 3 at %v, want B's remote-consistent LSN %v", got, end)
	}
	got := readAll(t, tlC, end)
	for lsn, w := range want {
		if got[lsn] != w {
			t.Errorf("at %v: generation 3 reads %q, B read %q", lsn, got[lsn], w)
		}
	}
	// B, now the zombie, cannot take its old generation back.
	if _, err := b.AttachTenant(ctx, tid, 1); !errors.Is(err, repo.ErrStaleGeneration) {
		t.Errorf("attach at an older generation: %v, want ErrStaleGeneration", err)
	}
}

// TestAttachDetach detaches a tenant (its last records are uploaded, its
// directory goes) and attaches it again on the same page server; an
// unknown tenant's attach is ErrTenantNotFound, and so is any use of a
// detached tenant.
func TestAttachDetach(t *testing.T) {
	ctx := context.Background()
	s := newRemoteSetup()
	r := s.open(t, nil)
	defer r.Close()
	tid, main := id.NewTenantID(), id.NewTimelineID()
	tn, err := r.CreateTenant(tid, smallTenantConfig())
	if err != nil {
		t.Fatal(err)
	}
	tl, err := tn.CreateTimeline(main, 0xF0)
	if err != nil {
		t.Fatal(err)
	}
	writeHistory(t, tl, 0, 21) // the last records are in memory only
	last := tl.LastRecordLSN()
	want := readAll(t, tl, last)
	if err := r.DetachTenant(ctx, tid); err != nil {
		t.Fatal(err)
	}
	if _, err := r.Tenant(tid); !errors.Is(err, repo.ErrTenantNotFound) {
		t.Fatalf("tenant after detach: %v, want ErrTenantNotFound", err)
	}
	if ids, _ := r.Tenants(); len(ids) != 0 {
		t.Errorf("tenants after detach: %v, want none", ids)
	}
	if _, err := r.AttachTenant(ctx, id.NewTenantID(), 1); !errors.Is(err, repo.ErrTenantNotFound) || !strings.Contains(err.Error(), "not in remote storage") {
		t.Errorf("attach of an unknown tenant: %v, want ErrTenantNotFound saying it is not in remote storage", err)
	}
	tl2 := attachTimeline(t, r, tid, 1, main)
	tn2, err := r.Tenant(tid)
	if err != nil {
		t.Fatal(err)
	}
	put(t, tl2, last+0x10, map[key.Key]value.Value{blk(7): img("new")})
	if err := tl2.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tn2.Upload(ctx); err != nil {
		t.Fatal(err)
	}
	indexes, err := s.remote.List(ctx, "tenants/"+tid.String()+"/timelines/"+main.String()+"/index.json")
	if err != nil {
		t.Fatal(err)
	}
	if len(indexes) != 1 || !strings.HasSuffix(indexes[0], "index.json-00000001") {
		t.Errorf("indexes after an upload at generation 1: %v, want generation 1's alone", indexes)
	}
	if got := tl2.LastRecordLSN(); got != last+0x10 {
		t.Errorf("last record after attach and one record %v, want %v", got, last+0x10)
	}
	got := readAll(t, tl2, last)
	for lsn, w := range want {
		if got[lsn] != w {
			t.Errorf("at %v: after detach and attach %q, want %q", lsn, got[lsn], w)
		}
	}
}

// readAll reads blocks 0 to 3 at every LSN of writeHistory's records up to
// end.
func readAll(t *testing.T, tl *repo.Timeline, end pgdata.LSN) map[string]string {
	t.Helper()
	out := map[string]string{}
	for lsn := pgdata.LSN(0x100); lsn <= end; lsn += 0x10 {
		for b := uint32(0); b < 4; b++ {
			v, err := tl.Get(context.Background(), blk(b), lsn)
			if errors.Is(err, repo.ErrKeyNotFound) {
				continue
			}
			if err != nil {
				t.Fatalf("Get(%v, %v): %v", blk(b), lsn, err)
			}
			out[lsn.String()+"/"+string(rune('0'+b))] = string(v)
		}
	}
	return out
}

// objectsOf returns the remote objects of tenant tid whose names carry
// generation gen, with their contents.
func objectsOf(t *testing.T, s *remoteSetup, tid id.TenantID, gen repo.Generation) map[string][]byte {
	t.Helper()
	ctx := context.Background()
	objects, err := s.remote.List(ctx, "tenants/"+tid.String()+"/")
	if err != nil {
		t.Fatal(err)
	}
	suffix := "-0000000" + gen.String()
	out := map[string][]byte{}
	for _, p := range objects {
		if !strings.HasSuffix(p, suffix) {
			continue
		}
		var buf bytes.Buffer
		if err := s.remote.Download(ctx, p, &buf); err != nil {
			t.Fatal(err)
		}
		out[p] = buf.Bytes()
	}
	return out
}

func equalObjects(a, b map[string][]byte) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || !bytes.Equal(v, w) {
			return false
		}
	}
	return true
}

func keys(m map[string][]byte) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k[strings.LastIndex(k, "/")+1:])
	}
	return out
}

// TestOnDemandLayers attaches a tenant whose layers are all in remote
// storage: the attach downloads none of them, reads fetch them and answer
// as the page server that wrote them did; with a disk budget of one byte
// every uploaded layer is evicted, and reads fetch them again.
func TestOnDemandLayers(t *testing.T) {
	ctx := context.Background()
	s := newRemoteSetup()
	w := s.open(t, nil)
	tid, main := id.NewTenantID(), id.NewTimelineID()
	tn, err := w.CreateTenant(tid, smallTenantConfig())
	if err != nil {
		t.Fatal(err)
	}
	tl, err := tn.CreateTimeline(main, 0xF0)
	if err != nil {
		t.Fatal(err)
	}
	writeHistory(t, tl, 0, 64)
	if err := tn.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	end := tl.LastRecordLSN()
	want := readAll(t, tl, end)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	disk := vfs.NewMem()
	cfg := testConfig(disk)
	cfg.Remote = s.remote
	cfg.UploadInterval = 0
	cfg.LayerDiskBudget = 1
	cfg.Logger = testLogger(t)
	r := mustOpen(t, cfg)
	defer r.Close()
	tl2 := attachTimeline(t, r, tid, 1, main)
	dir := "/work/tenants/" + tid.String() + "/timelines/" + main.String()
	if n := layerFilesIn(t, disk, dir); n != 0 {
		t.Errorf("%d layer files on disk after the attach, want none (fetched on demand)", n)
	}
	check := func(when string) {
		t.Helper()
		got := readAll(t, tl2, end)
		if len(got) != len(want) {
			t.Errorf("%s: %d pages read, want %d", when, len(got), len(want))
		}
		for k, v := range want {
			if got[k] != v {
				t.Errorf("%s: at %s read %q, want %q", when, k, got[k], v)
			}
		}
	}
	check("after the attach")
	fetched := r.RemoteStats().LayerFetches.Load()
	if fetched == 0 || layerFilesIn(t, disk, dir) == 0 {
		t.Fatalf("reads fetched %d layers, want some on disk", fetched)
	}
	// The first upload learns which layers remote storage holds.
	tn2, err := r.Tenant(tid)
	if err != nil {
		t.Fatal(err)
	}
	if err := tn2.Upload(ctx); err != nil {
		t.Fatal(err)
	}
	evicted, err := r.Evict()
	if err != nil {
		t.Fatal(err)
	}
	if evicted == 0 || layerFilesIn(t, disk, dir) != 0 {
		t.Errorf("evicted %d with a budget of 1 byte, %d layer files left; want all evicted", evicted, layerFilesIn(t, disk, dir))
	}
	check("after eviction")
	if again := r.RemoteStats().LayerFetches.Load(); again <= fetched {
		t.Errorf("layer fetches after eviction: %d, want more than %d", again, fetched)
	}
}

// layerFilesIn counts the layer files in dir.
func layerFilesIn(t *testing.T, fsys vfs.FS, dir string) int {
	t.Helper()
	names, err := fsys.List(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, name := range names {
		if strings.Contains(name, "__") && !strings.HasSuffix(name, ".tmp") {
			n++
		}
	}
	return n
}
