package repo_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/tomlconf"
	"github.com/zenithdb/zenith/repo/value"
	"github.com/zenithdb/zenith/repo/vfs"
)

// fixture is a repository with one tenant and timeline holding a known
// history of a few keys.
type fixture struct {
	fs     vfs.FS
	mem    *vfs.MemFS
	cfg    repo.Config
	r      *repo.Repository
	tenant id.TenantID
	tl     id.TimelineID
}

func newFixture(t *testing.T, fs vfs.FS, mem *vfs.MemFS) *fixture {
	f := &fixture{fs: fs, mem: mem, cfg: testConfig(fs), tenant: id.NewTenantID(), tl: id.NewTimelineID()}
	f.r = mustOpen(t, f.cfg)
	tn, err := f.r.CreateTenant(f.tenant, smallTenantConfig())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tn.CreateTimeline(f.tl, 0); err != nil {
		t.Fatal(err)
	}
	return f
}

func (f *fixture) timeline(t *testing.T) *repo.Timeline {
	t.Helper()
	tn, err := f.r.Tenant(f.tenant)
	if err != nil {
		t.Fatal(err)
	}
	tl, err := tn.Timeline(f.tl)
	if err != nil {
		t.Fatal(err)
	}
	return tl
}

func (f *fixture) dir() string {
	return filepath.Join("/work/tenants", f.tenant.String(), "timelines", f.tl.String())
}

func (f *fixture) reopen(t *testing.T) {
	t.Helper()
	if err := f.r.Close(); err != nil {
		t.Fatal(err)
	}
	f.r = mustOpen(t, f.cfg)
}

// history ingests records 1..n: each writes every key, an image every
// fourth record; it returns the expected value of each key at n.
func history(t *testing.T, tl *repo.Timeline, keys []key.Key, from, n int) map[key.Key]string {
	want := map[key.Key]string{}
	for i := from; i <= n; i++ {
		lsn := pgdata.LSN(0x100 * i)
		for _, k := range keys {
			s := fmt.Sprintf("<%v@%d>", k, i)
			v := rec(s)
			if i%4 == 1 {
				v = img(s)
			}
			if err := tl.Put(k, lsn, v); err != nil {
				t.Fatal(err)
			}
		}
		if err := tl.FinishWrite(lsn, lsn-0x100); err != nil {
			t.Fatal(err)
		}
	}
	for _, k := range keys {
		want[k] = wantAt(k, n)
	}
	return want
}

// wantAt is the value of k after record n of history.
func wantAt(k key.Key, n int) string {
	s := ""
	for i := n; i >= 1; i-- {
		s = fmt.Sprintf("<%v@%d>", k, i) + s
		if i%4 == 1 {
			break
		}
	}
	return s
}

func layerFiles(t *testing.T, fs vfs.FS, dir string) []string {
	t.Helper()
	names, err := fs.List(dir)
	if err != nil {
		t.Fatal(err)
	}
	var out []string
	for _, n := range names {
		if strings.Contains(n, "__") {
			out = append(out, filepath.Join(dir, n))
		}
	}
	return out
}

func rewrite(t *testing.T, fs vfs.FS, name string, edit func([]byte) []byte) {
	t.Helper()
	rf, err := fs.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(rf)
	rf.Close()
	if err != nil {
		t.Fatal(err)
	}
	wf, err := fs.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := wf.Write(edit(b)); err != nil {
		t.Fatal(err)
	}
	if err := wf.Close(); err != nil {
		t.Fatal(err)
	}
}

// TestCorruptLayerFileIsDetected flips every byte of a delta and of an
// image layer file in turn, and truncates them: reading every key through
// the repository must give a CorruptionError naming the file, never wrong
// data or a panic.
func TestCorruptLayerFileIsDetected(t *testing.T) {
	ctx := context.Background()
	mem := vfs.NewMem()
	f := newFixture(t, mem, mem)
	keys := []key.Key{blk(0), blk(1), blk(7), key.Checkpoint()}
	tl := f.timeline(t)
	history(t, tl, keys, 1, 6)
	if err := tl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tl.Compact(ctx); err != nil { // one small L0 layer: no image
		t.Fatal(err)
	}
	history(t, tl, keys, 7, 9)
	if err := tl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tl.Compact(ctx); err != nil { // two small L0 layers: still no image
		t.Fatal(err)
	}
	// No WAL since the last compaction: with an idle period this short,
	// this one images every key, at 0/900.
	tn, err := f.r.Tenant(f.tenant)
	if err != nil {
		t.Fatal(err)
	}
	conf := smallTenantConfig()
	conf.CompactionIdlePeriod = tomlconf.Duration(time.Nanosecond)
	if err := tn.SetConfig(conf); err != nil {
		t.Fatal(err)
	}
	if err := tl.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	files := layerFiles(t, mem, f.dir())
	if len(files) != 3 {
		t.Fatalf("layer files %v, want two deltas and an image", files)
	}
	f.reopen(t)
	// readAll reads every key at every LSN after a restart (so nothing
	// is cached), which reads every block of every layer file, and
	// reports the first error.
	readAll := func() error {
		f.reopen(t)
		tl := f.timeline(t)
		for i := 1; i <= 9; i++ {
			for _, k := range keys {
				got, err := tl.Get(ctx, k, pgdata.LSN(0x100*i))
				if err != nil {
					return err
				}
				if want := wantAt(k, i); string(got) != want {
					t.Fatalf("Get(%v, %d) = %q, want %q: wrong data served", k, i, got, want)
				}
			}
		}
		return nil
	}
	if err := readAll(); err != nil {
		t.Fatal(err)
	}
	for _, file := range files {
		name := filepath.Base(file)
		var orig []byte
		rewrite(t, mem, file, func(b []byte) []byte { orig = b; return b })
		expectCorruption := func(what string) {
			err := readAll()
			var ce *repo.CorruptionError
			if !errors.As(err, &ce) || ce.File != file {
				t.Fatalf("%s of %s: read error = %v, want a CorruptionError naming the file", what, name, err)
			}
		}
		checked := 0
		// Every byte of small files; a stride through bigger ones.
		stride := max(1, len(orig)/1500)
		for i := 0; i < len(orig); i += stride {
			rewrite(t, mem, file, func(b []byte) []byte { b[i] ^= 0x5A; return b })
			expectCorruption(fmt.Sprintf("flipping byte %d", i))
			rewrite(t, mem, file, func([]byte) []byte { return orig })
			checked++
		}
		for _, n := range []int{0, 10, len(orig) / 2, len(orig) - 1} {
			rewrite(t, mem, file, func(b []byte) []byte { return b[:n] })
			expectCorruption(fmt.Sprintf("truncating to %d bytes", n))
			rewrite(t, mem, file, func([]byte) []byte { return orig })
		}
		t.Logf("%s: %d of %d bytes flipped, each detected", name[len(name)-40:], checked, len(orig))
	}
	if err := readAll(); err != nil {
		t.Fatalf("after restoring the files: %v", err)
	}
	f.r.Close()
}

// TestCorruptMetadataIsDetected flips bytes of a timeline's metadata file
// and removes a layer file it lists: loading the timeline fails with a
// CorruptionError naming the file.
func TestCorruptMetadataIsDetected(t *testing.T) {
	mem := vfs.NewMem()
	f := newFixture(t, mem, mem)
	tl := f.timeline(t)
	history(t, tl, []key.Key{blk(0)}, 1, 3)
	if err := tl.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := f.r.Close(); err != nil {
		t.Fatal(err)
	}
	meta := filepath.Join(f.dir(), "metadata")
	var orig []byte
	rewrite(t, mem, meta, func(b []byte) []byte { orig = b; return b })
	load := func() error {
		r := mustOpen(t, f.cfg)
		defer r.Close()
		tn, err := r.Tenant(f.tenant)
		if err != nil {
			return err
		}
		_, err = tn.Timeline(f.tl)
		return err
	}
	for i := range orig {
		rewrite(t, mem, meta, func(b []byte) []byte { b[i] ^= 0x40; return b })
		err := load()
		var ce *repo.CorruptionError
		if !errors.As(err, &ce) || ce.File != meta {
			t.Fatalf("flipping byte %d (%q) of the metadata: error = %v, want a CorruptionError naming it", i, orig[i], err)
		}
	}
	rewrite(t, mem, meta, func([]byte) []byte { return orig })
	if err := load(); err != nil {
		t.Fatal(err)
	}
	layer := layerFiles(t, mem, f.dir())[0]
	if err := mem.Remove(layer); err != nil {
		t.Fatal(err)
	}
	err := load()
	var ce *repo.CorruptionError
	if !errors.As(err, &ce) || ce.File != layer {
		t.Fatalf("missing layer file: error = %v, want a CorruptionError naming %s", err, layer)
	}
}

// TestFailedFsyncFailsFlush injects a failed fsync at each step of a
// flush: the flush fails, the previous state stays readable and durable,
// and the next flush succeeds.
func TestFailedFsyncFailsFlush(t *testing.T) {
	tests := []struct {
		name  string
		match func(name string) bool
	}{
		{"layer file", func(n string) bool { return strings.HasSuffix(n, ".tmp") && !strings.Contains(n, "metadata") }},
		{"timeline directory", func(n string) bool { return filepath.Base(filepath.Dir(n)) == "timelines" }},
		{"new metadata", func(n string) bool { return strings.HasSuffix(n, "metadata.tmp") }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			mem := vfs.NewMem()
			faulty := vfs.NewFaulty(mem)
			f := newFixture(t, faulty, mem)
			tl := f.timeline(t)
			keys := []key.Key{blk(0), blk(1)}
			want1 := history(t, tl, keys, 1, 2)
			if err := tl.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			want2 := history(t, tl, keys, 3, 5)
			faulty.SetRule(vfs.FailOnce(vfs.OpSync, tt.match))
			if err := tl.Flush(ctx); !errors.Is(err, vfs.ErrInjected) {
				t.Fatalf("Flush with a failing fsync of the %s: error = %v, want ErrInjected", tt.name, err)
			}
			if got := tl.DiskConsistentLSN(); got != 0x200 {
				t.Errorf("DiskConsistentLSN after the failed flush = %v, want 0/200", got)
			}
			for _, k := range keys {
				wantGet(t, tl, k, 0x200, want1[k])
				wantGet(t, tl, k, 0x500, want2[k])
			}
			// A crash now keeps exactly the first flush.
			mem.Crash()
			f.r.Close()
			faulty.SetRule(nil)
			mem.Restart()
			f.r = mustOpen(t, f.cfg)
			tl = f.timeline(t)
			if got := tl.LastRecordLSN(); got != 0x200 {
				t.Fatalf("after the crash the timeline is at %v, want 0/200", got)
			}
			for _, k := range keys {
				wantGet(t, tl, k, 0x200, want1[k])
			}
			// Re-ingest, flush without faults, crash: all of it is there.
			history(t, tl, keys, 3, 5)
			if err := tl.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			mem.Crash()
			f.r.Close()
			mem.Restart()
			f.r = mustOpen(t, f.cfg)
			tl = f.timeline(t)
			for _, k := range keys {
				wantGet(t, tl, k, 0x500, want2[k])
			}
			if names := layerFiles(t, mem, f.dir()); len(names) != 2 {
				t.Errorf("layer files after recovery: %v, want the two flushes", names)
			}
			f.r.Close()
		})
	}
}

// TestGCPITR checks that GC keeps the PITR window: the cut-off is what was
// flushed before the window began, however far the horizon would allow.
func TestGCPITR(t *testing.T) {
	ctx := context.Background()
	mem := vfs.NewMem()
	now := time.Unix(1700000000, 0)
	cfg := testConfig(mem)
	cfg.Now = func() time.Time { return now }
	r := mustOpen(t, cfg)
	defer r.Close()
	conf := smallTenantConfig()
	conf.GCHorizon = 0
	conf.PITRInterval = tomlconf.Duration(time.Hour)
	_, tl := newTimeline(t, r, conf)
	steps := []struct {
		advance time.Duration
		lsn     pgdata.LSN
		want    pgdata.LSN // cut-off after GC at this point
	}{
		{0, 0x100, 0},                    // nothing is an hour old
		{40 * time.Minute, 0x200, 0},     // still nothing
		{30 * time.Minute, 0x300, 0x100}, // 0/100 was flushed 70 minutes ago
		{2 * time.Hour, 0x400, 0x300},    // everything before is out of the window
	}
	for i, s := range steps {
		now = now.Add(s.advance)
		put(t, tl, s.lsn, map[key.Key]value.Value{blk(0): img(fmt.Sprint(i))})
		if err := tl.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if err := tl.GC(ctx); err != nil {
			t.Fatal(err)
		}
		if got := tl.GCCutoff(); got != s.want {
			t.Errorf("step %d: GC cut-off = %v, want %v", i, got, s.want)
		}
	}
}

func TestWaitForLSN(t *testing.T) {
	mem := vfs.NewMem()
	f := newFixture(t, mem, mem)
	defer f.r.Close()
	tl := f.timeline(t)
	done := make(chan error, 1)
	go func() { done <- tl.WaitForLSN(context.Background(), 0x200) }()
	put(t, tl, 0x100, map[key.Key]value.Value{blk(0): img("a")})
	select {
	case err := <-done:
		t.Fatalf("WaitForLSN(0/200) returned %v at 0/100", err)
	case <-time.After(20 * time.Millisecond):
	}
	put(t, tl, 0x200, map[key.Key]value.Value{blk(0): rec("b")})
	if err := <-done; err != nil {
		t.Fatalf("WaitForLSN(0/200) = %v after 0/200 was ingested", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Millisecond)
	defer cancel()
	if err := tl.WaitForLSN(ctx, 0x300); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("WaitForLSN past the end: error = %v, want DeadlineExceeded", err)
	}
}

// TestBackgroundLoops lets the repository's own loops flush (by size),
// compact and create images, then checks the data after a restart.
func TestBackgroundLoops(t *testing.T) {
	mem := vfs.NewMem()
	cfg := testConfig(mem)
	cfg.FlushInterval, cfg.CompactionInterval, cfg.GCInterval = 5*time.Millisecond, 5*time.Millisecond, 5*time.Millisecond
	cfg.Logger = testLogger(t)
	r := mustOpen(t, cfg)
	tid, tlid := id.NewTenantID(), id.NewTimelineID()
	conf := smallTenantConfig()
	conf.ImageCreationThreshold = 1
	tn, err := r.CreateTenant(tid, conf)
	if err != nil {
		t.Fatal(err)
	}
	tl, err := tn.CreateTimeline(tlid, 0)
	if err != nil {
		t.Fatal(err)
	}
	keys := []key.Key{blk(0), blk(1), blk(2), blk(3)}
	want := history(t, tl, keys, 1, 200)
	deadline := time.Now().Add(10 * time.Second)
	for tl.DiskConsistentLSN() < 0x100*190 || !hasImage(t, mem, filepath.Join("/work/tenants", tid.String(), "timelines", tlid.String())) {
		if time.Now().After(deadline) {
			t.Fatalf("background loops did not flush and create images: disk-consistent LSN %v", tl.DiskConsistentLSN())
		}
		time.Sleep(5 * time.Millisecond)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r = mustOpen(t, testConfig(mem))
	defer r.Close()
	tn, _ = r.Tenant(tid)
	tl, err = tn.Timeline(tlid)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range keys {
		wantGet(t, tl, k, 0x100*200, want[k])
	}
}

func hasImage(t *testing.T, fs vfs.FS, dir string) bool {
	for _, n := range layerFiles(t, fs, dir) {
		if i := strings.Index(n, "__"); !strings.Contains(n[i:], "-") {
			return true
		}
	}
	return false
}
