package repo_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/layer"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/tomlconf"
	"github.com/zenithdb/zenith/repo/value"
	"github.com/zenithdb/zenith/repo/vfs"
)

// countingRedo is appendRedo that counts the pages it rebuilds.
type countingRedo struct {
	appendRedo
	pages atomic.Int64
}

func (c *countingRedo) Apply(ctx context.Context, tn id.TenantID, k key.Key, base []byte, recs []value.Record, lsn pgdata.LSN) ([]byte, error) {
	c.pages.Add(1)
	return c.appendRedo.Apply(ctx, tn, k, base, recs, lsn)
}

// TestIdleCompactionImagesLoadedData loads blocks the way a bulk load
// does (each block's history starts with a record that initializes it,
// then a few more records; fewer L0 layers than the compaction threshold,
// the end of it still in memory), then lets the timeline sit idle. Every
// read of the loaded data must then be served without WAL redo, and the
// idle compaction must not rewrite images of keys that already have one.
// Before the idle trigger, compaction wrote no image here (no L0
// compaction below 10 L0 layers, and 3 deltas per key range for images):
// every read replayed every record, for as long as nothing more was
// written.
func TestIdleCompactionImagesLoadedData(t *testing.T) {
	const blocks = 300
	ctx := context.Background()
	now := time.Unix(1_000_000, 0)
	redo := &countingRedo{}
	cfg := testConfig(vfs.Default)
	cfg.Workdir = t.TempDir()
	cfg.Redo = redo
	cfg.PageCacheSize = 0 // every read is a reconstruction
	cfg.Logger = testLogger(t)
	cfg.Now = func() time.Time { return now }
	r := mustOpen(t, cfg)
	conf := repo.DefaultTenantConfig()
	conf.CheckpointDistance = 64 << 10
	conf.CompactionTargetSize = 16 << 10
	conf.CompactionIdlePeriod = tomlconf.Duration(10 * time.Second)
	// Above the L0 layers written here, so that only the idle trigger
	// writes images (the default, 3, would image all keys at the third).
	conf.ImageCreationThreshold = 4
	tn, tl := newTimeline(t, r, conf)
	dir := filepath.Join(cfg.Workdir, "tenants", tn.ID().String(), "timelines", tl.ID().String())

	// The load: three records per block; one flush (an L0 layer), the
	// second half left in the open in-memory layer.
	want := make(map[key.Key]string, blocks)
	lsn := pgdata.LSN(0x1000)
	for b := uint32(0); b < blocks; b++ {
		k := blk(b)
		for _, v := range []value.Value{ini(fmt.Sprintf("[%d]", b)), rec("+a"), rec("+b")} {
			lsn += 0x10
			put(t, tl, lsn, map[key.Key]value.Value{k: v})
			want[k] += string(v.Data)
		}
		if b == blocks/2 {
			if err := tl.Flush(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	last := lsn
	readAll := func(when string) int64 {
		t.Helper()
		before := redo.pages.Load()
		for k, w := range want {
			wantGet(t, tl, k, last, w)
		}
		n := redo.pages.Load() - before
		t.Logf("%s: %d of %d blocks read needed WAL redo", when, n, blocks)
		return n
	}
	compact := func(after time.Duration) {
		t.Helper()
		now = now.Add(after)
		if err := tl.Compact(ctx); err != nil {
			t.Fatal(err)
		}
	}

	compact(0) // ingest has just happened: not idle
	if imgs := imageLayers(t, dir); len(imgs) != 0 {
		t.Fatalf("image layers %v right after the load, want none (not idle yet)", imgs)
	}
	if n := readAll("after the load"); n != blocks {
		t.Fatalf("%d blocks needed redo after the load, want all %d (the test shows nothing)", n, blocks)
	}
	compact(5 * time.Second) // idle for less than the period
	if imgs := imageLayers(t, dir); len(imgs) != 0 {
		t.Fatalf("image layers %v after 5 s idle, want none (the period is 10 s)", imgs)
	}

	compact(6 * time.Second) // idle for 11 s
	imgs := imageLayers(t, dir)
	if len(imgs) == 0 {
		t.Fatal("no image layer after the idle period")
	}
	if n := readAll("after the idle period"); n != 0 {
		t.Errorf("%d blocks needed WAL redo after the idle period, want 0", n)
	}
	if got := tl.DiskConsistentLSN(); got != last {
		t.Errorf("disk-consistent LSN %v after the idle period, want %v: the open layer was not flushed", got, last)
	}

	// Still idle: nothing more is written.
	files := layerFiles(t, vfs.Default, dir)
	compact(30 * time.Second)
	if got := layerFiles(t, vfs.Default, dir); fmt.Sprint(got) != fmt.Sprint(files) {
		t.Errorf("a second idle round changed the layer files\nfrom %v\nto   %v", files, got)
	}

	// A trickle: one loaded block changes and one block is added, then
	// the timeline is idle again. Only the new block gets an image; the
	// loaded range is not rewritten for one change.
	lsn += 0x10
	put(t, tl, lsn, map[key.Key]value.Value{blk(5): rec("+c"), blk(blocks): ini("[new]")})
	if err := tl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	compact(time.Second) // sees the new LSN
	compact(11 * time.Second)
	var added []layer.Desc
	old := make(map[string]bool)
	for _, d := range imgs {
		old[d.FileName()] = true
	}
	for _, d := range imageLayers(t, dir) {
		if !old[d.FileName()] {
			added = append(added, d)
		}
	}
	if len(added) != 1 || added[0].Keys != (key.Range{Start: blk(blocks), End: blk(blocks).Next()}) {
		t.Errorf("image layers written after the trickle: %v, want one of block %d only", added, blocks)
	}
	wantGet(t, tl, blk(5), lsn, want[blk(5)]+"+c")
	wantGet(t, tl, blk(blocks), lsn, "[new]")

	// A branch that changes one loaded block reads the rest through its
	// ancestor's images: its idle compaction copies none of them.
	br, err := tn.Branch(ctx, id.NewTimelineID(), tl.ID(), lsn)
	if err != nil {
		t.Fatal(err)
	}
	brDir := filepath.Join(cfg.Workdir, "tenants", tn.ID().String(), "timelines", br.ID().String())
	put(t, br, lsn+0x10, map[key.Key]value.Value{blk(7): rec("+d")})
	if err := br.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	for _, after := range []time.Duration{time.Second, 11 * time.Second} {
		now = now.Add(after)
		if err := br.Compact(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if imgs := imageLayers(t, brDir); len(imgs) != 0 {
		t.Errorf("the branch wrote image layers %v for keys its ancestor has images of", imgs)
	}
	wantGet(t, br, blk(7), lsn+0x10, want[blk(7)]+"+d")
	wantGet(t, br, blk(blocks), lsn+0x10, "[new]")
}

// imageLayers lists the image layer files in dir.
func imageLayers(t *testing.T, dir string) []layer.Desc {
	t.Helper()
	var out []layer.Desc
	for _, file := range layerFiles(t, vfs.Default, dir) {
		if d, err := layer.ParseFileName(filepath.Base(file)); err == nil && d.Kind == layer.Image {
			out = append(out, d)
		}
	}
	return out
}

// TestEarlyFlushedL0LayersCountByTheirWAL: L0 layers flushed early (the
// in-memory layers' memory limit flushes them at 16 MiB of WAL under a
// steady write load, not at the 256 MiB checkpoint distance) count toward
// the image creation threshold for the share of the checkpoint distance
// they span. Counted as one each, three of them rewrote the image of
// every key (the whole database) for each 48 MiB of WAL under pgbench
// TPC-B.
func TestEarlyFlushedL0LayersCountByTheirWAL(t *testing.T) {
	tests := []struct {
		name       string
		walPerL0   pgdata.LSN
		wantImages bool
	}{
		{"a sixteenth of the checkpoint distance each", 4 << 10, false},
		{"the checkpoint distance each", 64 << 10, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			cfg := testConfig(vfs.Default)
			cfg.Workdir = t.TempDir()
			cfg.Logger = testLogger(t)
			r := mustOpen(t, cfg)
			conf := repo.DefaultTenantConfig() // image_creation_threshold 3
			conf.CheckpointDistance = 64 << 10
			conf.CompactionIdlePeriod = 0
			tn, tl := newTimeline(t, r, conf)
			put(t, tl, 0x100, map[key.Key]value.Value{blk(0): img("base")})
			lsn := pgdata.LSN(0x100)
			for i := 0; i < 4; i++ { // four L0 layers, below compaction_threshold
				lsn += tt.walPerL0
				put(t, tl, lsn, map[key.Key]value.Value{blk(0): rec(fmt.Sprintf("+%d", i))})
				if err := tl.Flush(ctx); err != nil {
					t.Fatal(err)
				}
			}
			if err := tl.Compact(ctx); err != nil {
				t.Fatal(err)
			}
			dir := filepath.Join(cfg.Workdir, "tenants", tn.ID().String(), "timelines", tl.ID().String())
			if got := len(imageLayers(t, dir)) > 0; got != tt.wantImages {
				t.Errorf("image layers written: %v, want %v", got, tt.wantImages)
			}
			wantGet(t, tl, blk(0), lsn, "base+0+1+2+3")
		})
	}
}
