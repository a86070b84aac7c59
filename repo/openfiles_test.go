package repo_test

import (
	"context"
	"fmt"
	"math/rand"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/tomlconf"
	"github.com/zenithdb/zenith/repo/value"
	"github.com/zenithdb/zenith/repo/vfs"
)

// TestManyLayersFewOpenFiles writes a history of many more layer files
// than a limit of 32 open ones, then reads every block at every LSN it
// changed at and compares with a model: every read must be right, and the
// layer files open (counted by the repository and in /proc/self/fd) must
// stay within the limit. Before the limit, every layer file read once
// stayed open until the timeline closed: a page server with a long history
// ran out of file descriptors.
func TestManyLayersFewOpenFiles(t *testing.T) {
	const (
		limit   = 32
		blocks  = 40
		records = 3000
		flushes = 150 // layer files written by flushes
	)
	dir := t.TempDir()
	cfg := testConfig(vfs.Default)
	cfg.Workdir = dir
	cfg.MaxOpenLayerFiles = limit
	cfg.PageCacheSize = 0 // every read goes to the layers
	r := mustOpen(t, cfg)
	defer r.Close()
	conf := repo.DefaultTenantConfig()
	conf.CheckpointDistance = 1 << 30
	conf.CheckpointTimeout = tomlconf.Duration(1 << 40)
	conf.CompactionThreshold = 1000
	tn, tl := newTimeline(t, r, conf)

	// model[b] is block b's history: the page after each record.
	type version struct {
		lsn  pgdata.LSN
		page string
	}
	model := make([][]version, blocks)
	rng := rand.New(rand.NewSource(1))
	ctx := context.Background()
	for i := range records {
		lsn := pgdata.LSN(0x100 + 0x10*i)
		b := rng.Intn(blocks)
		var v value.Value
		page := ""
		if h := model[b]; len(h) == 0 || rng.Intn(10) == 0 {
			page = fmt.Sprintf("[%d@%x]", b, uint64(lsn))
			v = value.Image([]byte(page))
		} else {
			rec := fmt.Sprintf("+%x", uint64(lsn))
			page = h[len(h)-1].page + rec
			v = value.WALRecord([]byte(rec), false)
		}
		model[b] = append(model[b], version{lsn, page})
		put(t, tl, lsn, map[key.Key]value.Value{blk(uint32(b)): v})
		if (i+1)%(records/flushes) == 0 {
			if err := tl.Flush(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	timelineDir := filepath.Join(dir, "tenants", tn.ID().String(), "timelines", tl.ID().String())
	checkOpen := func(when string) {
		t.Helper()
		st := r.MemoryStats()
		if st.MaxOpenLayerFiles != limit || st.OpenLayerFiles > limit {
			t.Fatalf("%s: %d layer files open, limit %d (stats %+v)", when, st.OpenLayerFiles, st.MaxOpenLayerFiles, st)
		}
		if n := openFilesIn(t, timelineDir); n > limit {
			t.Fatalf("%s: %d file descriptors open in the timeline's directory, limit %d", when, n, limit)
		}
	}
	readAll := func(when string) {
		t.Helper()
		for _, b := range rng.Perm(blocks) {
			for _, v := range model[b] {
				wantGet(t, tl, blk(uint32(b)), v.lsn, v.page)
			}
			checkOpen(fmt.Sprintf("%s, block %d read", when, b))
		}
	}
	if n := layerFilesIn(t, vfs.Default, timelineDir); n < 4*limit {
		t.Fatalf("%d layer files written, want many more than the limit of %d", n, limit)
	}
	readAll("after the flushes")
	if st := r.MemoryStats(); st.LayerFileOpens <= limit {
		t.Errorf("%d layer files opened for reading: the limit was never reached, the test shows nothing", st.LayerFileOpens)
	}

	// Compaction reads many files at once and writes new ones; the reads
	// after it go to a different set of files. It merges no more L0
	// layers than the limit at once: it holds each of them open.
	conf.CompactionThreshold = 2
	if err := tn.SetConfig(conf); err != nil {
		t.Fatal(err)
	}
	l0Before := l0FilesIn(t, timelineDir)
	if err := tl.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	if got, want := l0FilesIn(t, timelineDir), l0Before-limit; got != want {
		t.Errorf("after one compaction: %d L0 layer files of %d, want %d: %d merged at once, the open-file limit is %d", got, l0Before, want, l0Before-got, limit)
	}
	checkOpen("after compaction")
	readAll("after compaction")
}

// openFilesIn counts this process's file descriptors open on files in dir
// (vfs.OpenFilesIn); the test is skipped where they cannot be counted.
func openFilesIn(t *testing.T, dir string) int {
	t.Helper()
	n, err := vfs.OpenFilesIn(dir)
	if err != nil {
		t.Skip(err)
	}
	return n
}

// l0FilesIn counts the L0 delta layer files in dir: those over every key
// and a range of LSNs.
func l0FilesIn(t *testing.T, dir string) int {
	t.Helper()
	names, err := vfs.Default.List(dir)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, name := range names {
		keys, lsns, ok := strings.Cut(name, "__")
		if ok && keys == key.All.String() && strings.Contains(lsns, "-") && !strings.HasSuffix(name, ".tmp") {
			n++
		}
	}
	return n
}

// TestCompactionThresholdFollowsOpenFileLimit checks that with a small
// max_open_layer_files, L0 layers are compacted once they reach half of
// it, before compaction_threshold: every read goes through them all.
func TestCompactionThresholdFollowsOpenFileLimit(t *testing.T) {
	const limit = 8
	const flushes = limit / 2
	dir := t.TempDir()
	cfg := testConfig(vfs.Default)
	cfg.Workdir = dir
	cfg.MaxOpenLayerFiles = limit
	r := mustOpen(t, cfg)
	defer r.Close()
	conf := repo.DefaultTenantConfig()
	conf.CheckpointDistance = 1 << 30
	conf.CheckpointTimeout = tomlconf.Duration(1 << 40)
	conf.CompactionThreshold = 10
	tn, tl := newTimeline(t, r, conf)
	ctx := context.Background()
	for i := range flushes {
		put(t, tl, pgdata.LSN(0x100+0x10*i), map[key.Key]value.Value{blk(uint32(i)): value.Image([]byte(fmt.Sprintf("[%d]", i)))})
		if err := tl.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	timelineDir := filepath.Join(dir, "tenants", tn.ID().String(), "timelines", tl.ID().String())
	if n := l0FilesIn(t, timelineDir); n != flushes {
		t.Fatalf("%d L0 layer files after %d flushes", n, flushes)
	}
	if err := tl.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	if n := l0FilesIn(t, timelineDir); n != 0 {
		t.Errorf("%d L0 layer files after compaction with %d open files at most, want 0 (compacted at %d, under the threshold of %d)", n, limit, limit/2, conf.CompactionThreshold)
	}
	for i := range flushes {
		wantGet(t, tl, blk(uint32(i)), pgdata.LSN(0x100+0x10*i), fmt.Sprintf("[%d]", i))
	}
}
