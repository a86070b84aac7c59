package basebackup

import (
	"archive/tar"
	"bytes"
	"context"
	"io"
	"reflect"
	"testing"

	"github.com/zenithdb/zenith/pageserver/datadir"
	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/value"
)

// TestBasebackupFiles builds a small data-directory model with a
// DatadirWriter and checks the basebackup's files, name by name: relation
// segment files split as md.c splits them (with a tiny RELSEG_SIZE), holes
// as zeros, unlogged relations reset from their init fork, a database
// dropped by a later record gone, PG_VERSION written for every database,
// and pg_control and the WAL segment pointing at a shutdown checkpoint at
// the LSN.
func TestBasebackupFiles(t *testing.T) {
	ctx := context.Background()
	r := openTestRepo(t, t.TempDir())
	defer r.Close()
	_, tl := newTestTimeline(t, r)

	const lsn1, lsn2, prev2 = pgdata.LSN(0x1000100), pgdata.LSN(0x1000200), pgdata.LSN(0x10001a0)
	global := datadir.Database{SpcNode: pgdata.GlobalTablespaceOID, DbNode: 0}
	db5, db6 := datadir.Database{SpcNode: pgdata.DefaultTablespaceOID, DbNode: 5}, datadir.Database{SpcNode: pgdata.DefaultTablespaceOID, DbNode: 6}
	shared := pgdata.RelFileNode{SpcNode: global.SpcNode, RelNode: 1262}
	rel := func(n uint32) pgdata.RelFileNode {
		return pgdata.RelFileNode{SpcNode: db5.SpcNode, DbNode: db5.DbNode, RelNode: n}
	}
	page := func(b byte) []byte { return bytes.Repeat([]byte{b}, pgdata.BlockSize) }
	cp := pgdata.CheckPoint{ThisTimeLineID: 1, PrevTimeLineID: 1, NextXid: 1<<32 | 900, NextOid: 24576, NextMulti: 3, OldestXid: 700, OldestXidDB: 1, OldestActiveXid: 850, Time: 1700000000}
	control := (&pgdata.ControlFile{
		SystemIdentifier: 7, ControlVersion: pgdata.ControlVersion, CatalogVersion: pgdata.CatalogVersion,
		State: pgdata.DBInProduction, CheckPoint: 0x1000028, CheckPointCopy: cp, MinRecoveryPoint: 0x1000080,
		WALLevel: pgdata.WALLevelReplica, BlockSize: pgdata.BlockSize, RelSegSize: 2,
		XLogBlockSize: pgdata.XLogBlockSize, XLogSegSize: pgdata.WALSegmentSize,
	}).Encode()

	w := datadir.NewDatadirWriter(tl)
	must := func(errs ...error) {
		t.Helper()
		for _, err := range errs {
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	w.Begin(lsn1)
	must(
		w.PutControlFile(control),
		w.PutCheckpoint(&cp),
		w.PutAuxFile(ctx, "PG_VERSION", []byte("15\n")),
		w.PutAuxFile(ctx, "postgresql.conf", []byte("port = 5432\n")),
		w.PutAuxFile(ctx, "base/5/PG_VERSION", []byte("stale")),
		w.PutAuxFile(ctx, "base/6/PG_VERSION", []byte("15\n")),
		w.PutRelMap(global, []byte("global map")),
		w.PutRelMap(db5, []byte("db5 map")),
		w.PutRelMap(db6, []byte("db6 map")),
		// 5 blocks in segments of 2: 1262, 1262.1, 1262.2; block 3 a hole.
		w.SetRelSize(ctx, shared, pgdata.ForkMain, 5),
		w.PutRelBlock(shared, pgdata.ForkMain, 0, value.Image(page(10))),
		w.PutRelBlock(shared, pgdata.ForkMain, 1, value.Image(page(11))),
		w.PutRelBlock(shared, pgdata.ForkMain, 2, value.Image(page(12))),
		w.PutRelBlock(shared, pgdata.ForkMain, 4, value.Image(page(14))),
		// Exactly 2 segments full: no empty third file.
		w.SetRelSize(ctx, rel(16384), pgdata.ForkMain, 4),
		w.CreateRelation(ctx, rel(16385), pgdata.ForkMain),
		// Unlogged: its main and fsm forks hold what the WAL never saw.
		w.SetRelSize(ctx, rel(16386), pgdata.ForkInit, 1),
		w.PutRelBlock(rel(16386), pgdata.ForkInit, 0, value.Image(page(20))),
		w.SetRelSize(ctx, rel(16386), pgdata.ForkMain, 3),
		w.SetRelSize(ctx, rel(16386), pgdata.ForkFSM, 1),
		w.SetRelSize(ctx, pgdata.RelFileNode{SpcNode: db6.SpcNode, DbNode: db6.DbNode, RelNode: 1259}, pgdata.ForkMain, 1),
		w.SetSLRUSegmentSize(ctx, key.Clog, 0, 2),
		w.PutSLRUPage(key.Clog, 0, 1, value.Image(page(30))),
		w.PutTwoPhaseFile(ctx, 0x2AB, []byte("prepared")),
	)
	must(w.Commit(lsn1 - 0x80))
	w.Begin(lsn2)
	must(w.DropDatabase(ctx, db6))
	must(w.Commit(prev2))

	var buf bytes.Buffer
	if err := Basebackup(ctx, tl, lsn2, &buf, Options{}); err != nil {
		t.Fatal(err)
	}
	files := map[string][]byte{}
	dirs := map[string]bool{}
	tr := tar.NewReader(&buf)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeDir {
			dirs[h.Name] = true
			continue
		}
		if files[h.Name], err = io.ReadAll(tr); err != nil {
			t.Fatal(err)
		}
	}

	zero := page(0)
	cat := func(pages ...[]byte) []byte { return bytes.Join(pages, nil) }
	walName := pgdata.WALFileName(1, 1, pgdata.WALSegmentSize)
	want := map[string][]byte{
		"PG_VERSION":             []byte("15\n"),
		"postgresql.conf":        []byte("port = 5432\n"),
		"global/pg_filenode.map": []byte("global map"),
		"global/1262":            cat(page(10), page(11)),
		"global/1262.1":          cat(page(12), zero),
		"global/1262.2":          page(14),
		"base/5/PG_VERSION":      []byte("15\n"),
		"base/5/pg_filenode.map": []byte("db5 map"),
		"base/5/16384":           cat(zero, zero),
		"base/5/16384.1":         cat(zero, zero),
		"base/5/16385":           {},
		"base/5/16386_init":      page(20),
		"base/5/16386":           page(20),
		"pg_xact/0000":           cat(zero, page(30)),
		"pg_twophase/000002AB":   []byte("prepared"),
		"pg_wal/" + walName:      files["pg_wal/"+walName],
		"global/pg_control":      files["global/pg_control"],
	}
	for name, b := range files {
		if wb, ok := want[name]; !ok {
			t.Errorf("unexpected file %s (%d bytes)", name, len(b))
		} else if !bytes.Equal(b, wb) {
			t.Errorf("%s: %d bytes %.16x..., want %d bytes %.16x...", name, len(b), b, len(wb), wb)
		}
	}
	for name := range want {
		if _, ok := files[name]; !ok {
			t.Errorf("missing file %s", name)
		}
	}
	for _, d := range append(basebackupDirs, "base/5", "pg_wal", "pg_logical", "pg_multixact") {
		if !dirs[d+"/"] {
			t.Errorf("missing directory %s", d)
		}
	}
	if dirs["base/6/"] {
		t.Errorf("the dropped database's directory base/6 is in the basebackup")
	}

	cf, err := pgdata.ParseControlFile(files["global/pg_control"])
	if err != nil {
		t.Fatal(err)
	}
	wantCP := cp
	wantCP.Redo, wantCP.OldestActiveXid = lsn2, 0
	if cf.CheckPoint != lsn2 || cf.CheckPointCopy != wantCP || cf.State != pgdata.DBShutdowned || cf.MinRecoveryPoint != 0 || cf.RelSegSize != 2 || cf.WALLevel != pgdata.WALLevelReplica {
		t.Errorf("pg_control: checkpoint %v %+v, state %v, min recovery point %v, relseg %d, wal_level %d; want %v %+v, shut down, 0/0, 2, replica",
			cf.CheckPoint, cf.CheckPointCopy, cf.State, cf.MinRecoveryPoint, cf.RelSegSize, cf.WALLevel, lsn2, wantCP)
	}

	// The record does not cross a page: decode it in place.
	seg := files["pg_wal/"+walName]
	off := lsn2.SegmentOffset(pgdata.WALSegmentSize)
	rec, err := pgdata.DecodeRecord(lsn2, seg[off:off+pgdata.CheckpointRecordSize])
	if err != nil {
		t.Fatal(err)
	}
	gotCP, err := pgdata.ParseCheckPoint(rec.MainData)
	if err != nil {
		t.Fatal(err)
	}
	if rec.LSN != lsn2 || rec.Header.Prev != prev2 || rec.Rmgr() != pgdata.RmgrXLOG || rec.RmgrInfo() != pgdata.XLogCheckpointShutdown || !reflect.DeepEqual(gotCP, wantCP) {
		t.Errorf("WAL record at %v: prev %v, rmgr %v info %#x, checkpoint %+v; want a shutdown checkpoint with prev %v and %+v",
			rec.LSN, rec.Header.Prev, rec.Rmgr(), rec.RmgrInfo(), gotCP, prev2, wantCP)
	}
}
