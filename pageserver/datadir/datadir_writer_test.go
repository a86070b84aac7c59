package datadir

import (
	"context"
	"slices"
	"testing"

	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/vfs"
)

// TestDatadirWriterRecords drives the writer as WAL ingest will, one
// record at a time, and checks the directories and sizes at each LSN.
func TestDatadirWriterRecords(t *testing.T) {
	ctx := context.Background()
	cfg := repo.DefaultConfig("/work")
	cfg.FS, cfg.Redo = vfs.NewMem(), noRedo{}
	cfg.FlushInterval, cfg.CompactionInterval, cfg.GCInterval = 0, 0, 0
	r, err := repo.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	_, tl := newTestTimeline(t, r)
	rel := pgdata.RelFileNode{SpcNode: 1663, DbNode: 5, RelNode: 16384}
	db := Database{1663, 5}
	w := NewDatadirWriter(tl)
	step := func(lsn pgdata.LSN, change func() error) {
		t.Helper()
		w.Begin(lsn)
		if err := change(); err != nil {
			t.Fatal(err)
		}
		if err := w.Commit(lsn - 8); err != nil {
			t.Fatal(err)
		}
	}
	step(0x10, func() error { return w.CreateRelation(ctx, rel, pgdata.ForkMain) })
	step(0x20, func() error {
		if err := w.SetRelSize(ctx, rel, pgdata.ForkMain, 3); err != nil {
			return err
		}
		return w.SetRelSize(ctx, rel, pgdata.ForkMain, 5) // a second extend in one record
	})
	step(0x30, func() error { return w.CreateRelation(ctx, rel, pgdata.ForkVM) })
	step(0x40, func() error { return w.DropRelation(ctx, rel, pgdata.ForkVM) })
	step(0x50, func() error { return w.DropDatabase(ctx, db) })

	for _, tc := range []struct {
		lsn  pgdata.LSN
		dbs  DBDir
		rels RelDir
		size uint32
	}{
		{0x10, DBDir{db}, RelDir{{16384, 1}}, 0},
		{0x20, DBDir{db}, RelDir{{16384, 1}}, 5},
		{0x30, DBDir{db}, RelDir{{16384, 1 | 1<<pgdata.ForkVM}}, 5},
		{0x40, DBDir{db}, RelDir{{16384, 1}}, 5},
		{0x50, DBDir{}, RelDir{}, 0},
	} {
		b, err := tl.Get(ctx, key.DBDir(), tc.lsn)
		if err != nil {
			t.Fatal(err)
		}
		dbs, err := DecodeDBDir(b)
		if err != nil || !slices.Equal(dbs, tc.dbs) {
			t.Errorf("databases at %v = %v, %v; want %v", tc.lsn, dbs, err, tc.dbs)
		}
		b, err = tl.Get(ctx, key.RelDir(db.SpcNode, db.DbNode), tc.lsn)
		if err != nil {
			t.Fatal(err)
		}
		rels, err := DecodeRelDir(b)
		if err != nil || !slices.Equal(rels, tc.rels) {
			t.Errorf("relations at %v = %v, %v; want %v", tc.lsn, rels, err, tc.rels)
		}
		if n, err := tl.RelSize(ctx, rel, pgdata.ForkMain, tc.lsn); err != nil || n != tc.size {
			t.Errorf("size at %v = %d, %v; want %d", tc.lsn, n, err, tc.size)
		}
	}
	// A second writer starts from what the first stored.
	w2 := NewDatadirWriter(tl)
	if got, err := w2.Databases(ctx); err != nil || len(got) != 0 {
		t.Errorf("a new writer sees databases %v, %v; want none", got, err)
	}
}
