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
	"github.com/zenithdb/zenith/repo/remote"
	"github.com/zenithdb/zenith/repo/value"
	"github.com/zenithdb/zenith/repo/vfs"
)

// remoteSetup is a repository with remote storage on its own file system,
// so that the repository's disk can be lost while the remote stays.
type remoteSetup struct {
	remoteFS *vfs.Faulty // nil for a remote not on a vfs
	remote   remote.Storage
}

func newRemoteSetup() *remoteSetup {
	f := vfs.NewFaulty(vfs.NewMem())
	return &remoteSetup{remoteFS: f, remote: remote.NewLocalDir(f, "/remote")}
}

// open opens a repository on a fresh disk (or on fs) with the remote.
func (s *remoteSetup) open(t *testing.T, fs vfs.FS) *repo.Repository {
	t.Helper()
	return s.openWith(t, fs, nil)
}

// openWith is open with the repository's config changed by f (if set).
func (s *remoteSetup) openWith(t *testing.T, fs vfs.FS, f func(*repo.Config)) *repo.Repository {
	t.Helper()
	if fs == nil {
		fs = vfs.NewMem()
	}
	cfg := testConfig(fs)
	cfg.Remote = s.remote
	cfg.UploadInterval = 0
	cfg.TenantFiles = []string{"branches.json"}
	cfg.Logger = testLogger(t)
	if f != nil {
		f(&cfg)
	}
	return mustOpen(t, cfg)
}

// writeHistory writes records from..from+n-1 to tl, block i%4 getting record
// i at LSN 0x100+i*0x10, flushing after every 8th.
func writeHistory(t *testing.T, tl *repo.Timeline, from, n int) {
	t.Helper()
	for i := from; i < from+n; i++ {
		put(t, tl, pgdata.LSN(0x100+i*0x10), map[key.Key]value.Value{blk(uint32(i % 4)): ini(string(rune('a' + i%26)))})
		if i%8 == 7 {
			if err := tl.Flush(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
	}
}

// TestRemoteRestore loses the page server's disk after an upload: a new
// repository on the same remote storage reads the same history, and the
// remote-consistent LSN says how far that is.
func TestRemoteRestore(t *testing.T) {
	ctx := context.Background()
	s := newRemoteSetup()
	disk := vfs.NewMem()
	r := s.open(t, disk)
	tid, main, child := id.NewTenantID(), id.NewTimelineID(), id.NewTimelineID()
	tn, tl := createTimeline(t, r, tid, main, 0xF0)
	writeHistory(t, tl, 0, 40)
	if err := tl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tn.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	ch, err := tn.Branch(ctx, child, main, 0x100+20*0x10)
	if err != nil {
		t.Fatal(err)
	}
	put(t, ch, 0x1000, map[key.Key]value.Value{blk(9): img("child")})
	if err := ch.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := vfs.WriteFileAtomic(disk, "/work/tenants/"+tid.String()+"/branches.json", []byte("names"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := tl.RemoteConsistentLSN(); got != 0 {
		t.Errorf("remote-consistent LSN before any upload = %v, want 0", got)
	}
	if err := tn.Upload(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := tl.RemoteConsistentLSN(), tl.DiskConsistentLSN(); got != want {
		t.Errorf("remote-consistent LSN = %v, want the disk-consistent %v", got, want)
	}
	// Records after the upload are flushed but never uploaded: lost with
	// the disk, and the remote-consistent LSN said so.
	remoteLSN := tl.RemoteConsistentLSN()
	put(t, tl, 0x2000, map[key.Key]value.Value{blk(0): img("late")})
	if err := tl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	// The safekeepers must keep the WAL of the late record: the durable
	// LSN, which they remove WAL below, is the remote-consistent one.
	if got := tl.DurableLSN(); got != remoteLSN || tl.DiskConsistentLSN() != 0x2000 {
		t.Errorf("durable LSN = %v with disk-consistent %v, want the remote-consistent %v", got, tl.DiskConsistentLSN(), remoteLSN)
	}
	// The disk is lost without a Close (whose last upload would send
	// the late record).
	disk2 := vfs.NewMem()
	r2 := s.open(t, disk2)
	defer r2.Close()
	tn2, err := r2.AttachTenant(ctx, tid, 1)
	if err != nil {
		t.Fatal(err)
	}
	tl2, err := tn2.Timeline(main)
	if err != nil {
		t.Fatal(err)
	}
	if got := tl2.DiskConsistentLSN(); got != remoteLSN {
		t.Errorf("restored at %v, want the remote-consistent LSN %v", got, remoteLSN)
	}
	for lsn := pgdata.LSN(0x100); lsn <= remoteLSN; lsn += 0x10 {
		i := int(lsn-0x100) / 0x10
		wantGet(t, tl2, blk(uint32(i%4)), lsn, string(rune('a'+i%26)))
	}
	ch2, err := tn2.Timeline(child)
	if err != nil {
		t.Fatal(err)
	}
	wantGet(t, ch2, blk(9), 0x1000, "child")
	wantGet(t, ch2, blk(0), 0x1000, "u")
	var names bytes.Buffer
	f, err := disk2.Open("/work/tenants/" + tid.String() + "/branches.json")
	if err == nil {
		_, _ = names.ReadFrom(f)
		f.Close()
	}
	if names.String() != "names" {
		t.Errorf("restored branches.json = %q, %v; want %q", names.String(), err, "names")
	}
}

// TestRemoteUploadFaults fails uploads: the remote-consistent LSN never
// passes what is uploaded, a later upload completes the work, and a
// failure between a layer's upload and the index's leaves a remote state
// that restores (the older one).
func TestRemoteUploadFaults(t *testing.T) {
	ctx := context.Background()
	s := newRemoteSetup()
	r := s.open(t, nil)
	tid, main := id.NewTenantID(), id.NewTimelineID()
	tn, tl := createTimeline(t, r, tid, main, 0xF0)
	writeHistory(t, tl, 0, 8)
	if err := tn.Upload(ctx); err != nil {
		t.Fatal(err)
	}
	first := tl.RemoteConsistentLSN()
	writeHistory(t, tl, 8, 8)
	// The index's upload fails after the new layer went up: the second
	// rename of an upload into place.
	renames := 0
	s.remoteFS.SetRule(func(op vfs.Op, name string) error {
		if op == vfs.OpRename {
			if renames++; renames == 2 {
				return vfs.ErrInjected
			}
		}
		return nil
	})
	if err := tn.Upload(ctx); !errors.Is(err, vfs.ErrInjected) {
		t.Fatalf("upload with a failing index: error = %v, want ErrInjected", err)
	}
	s.remoteFS.SetRule(nil)
	if renames != 2 {
		t.Fatalf("%d uploads, want the layer's and the index's", renames)
	}
	if got := tl.RemoteConsistentLSN(); got != first {
		t.Errorf("remote-consistent LSN after a failed upload = %v, want %v", got, first)
	}
	// A page server that attaches the tenant now restores the first
	// state.
	r2 := s.open(t, nil)
	tl2 := attachTimeline(t, r2, tid, 1, main)
	if got := tl2.DiskConsistentLSN(); got != first {
		t.Errorf("restored after a failed index upload at %v, want %v", got, first)
	}
	wantGet(t, tl2, blk(3), first, string(rune('a'+7)))
	if err := r2.Close(); err != nil {
		t.Fatal(err)
	}
	// The retry, by the first page server attached again at a newer
	// generation, completes it.
	if _, err := r.AttachTenant(ctx, tid, 2); err != nil {
		t.Fatal(err)
	}
	if err := tn.Upload(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := tl.RemoteConsistentLSN(), tl.DiskConsistentLSN(); got != want || got == first {
		t.Errorf("remote-consistent LSN after the retry = %v, want %v", got, want)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r3 := s.open(t, nil)
	defer r3.Close()
	wantGet(t, attachTimeline(t, r3, tid, 3, main), blk(3), 0x100+15*0x10, string(rune('a'+15)))
}

// TestRemoteCorruption damages remote objects: the attach (a damaged
// index) or the read that fetches a layer (a damaged layer) fails naming
// the object, and serves nothing wrong.
func TestRemoteCorruption(t *testing.T) {
	ctx := context.Background()
	for _, c := range []struct {
		name   string
		object string // suffix of the object to damage
		damage func([]byte) []byte
	}{
		{"truncated layer", "-", func(b []byte) []byte { return b[:len(b)/2] }},
		{"flipped byte in a layer", "-", func(b []byte) []byte { b[len(b)/3] ^= 1; return b }},
		{"damaged index", "index.json", func(b []byte) []byte {
			return bytes.Replace(b, []byte("disk_consistent_lsn"), []byte("disk_consistent_lsm"), 1)
		}},
	} {
		t.Run(c.name, func(t *testing.T) {
			s := newRemoteSetup()
			r := s.open(t, nil)
			tid, main := id.NewTenantID(), id.NewTimelineID()
			_, tl := createTimeline(t, r, tid, main, 0xF0)
			writeHistory(t, tl, 0, 8)
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
			objects, err := s.remote.List(ctx, "tenants/"+tid.String()+"/timelines/")
			if err != nil {
				t.Fatal(err)
			}
			var target string
			for _, o := range objects {
				if strings.Contains(o[strings.LastIndex(o, "/"):], c.object) {
					target = o
				}
			}
			if target == "" {
				t.Fatalf("no object like %q in %v", c.object, objects)
			}
			var buf bytes.Buffer
			if err := s.remote.Download(ctx, target, &buf); err != nil {
				t.Fatal(err)
			}
			if err := s.remote.Upload(ctx, target, bytes.NewReader(c.damage(buf.Bytes()))); err != nil {
				t.Fatal(err)
			}
			// The attach reads the index; a read fetches the layers.
			r2 := s.open(t, nil)
			defer r2.Close()
			tn2, err := r2.AttachTenant(ctx, tid, 1)
			if err == nil {
				var tl2 *repo.Timeline
				if tl2, err = tn2.Timeline(main); err == nil {
					for b := uint32(0); b < 4 && err == nil; b++ {
						var v []byte
						v, err = tl2.Get(ctx, blk(b), 0x100+7*0x10)
						if err == nil && len(v) == 0 {
							err = errors.New("empty page")
						}
					}
				}
			}
			var ce *repo.CorruptionError
			if !errors.As(err, &ce) || !strings.Contains(ce.File, target) {
				t.Fatalf("attach and read from a damaged remote: error = %v, want a CorruptionError naming %s", err, target)
			}
		})
	}
}

// attachTimeline attaches tenant tid to r at generation gen and returns
// its timeline tlid.
func attachTimeline(t *testing.T, r *repo.Repository, tid id.TenantID, gen repo.Generation, tlid id.TimelineID) *repo.Timeline {
	t.Helper()
	tn, err := r.AttachTenant(context.Background(), tid, gen)
	if err != nil {
		t.Fatal(err)
	}
	tl, err := tn.Timeline(tlid)
	if err != nil {
		t.Fatal(err)
	}
	return tl
}
