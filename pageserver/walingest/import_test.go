package walingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/pageserver/datadir"
	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/pgcluster"
	"github.com/zenithdb/zenith/repo/pgcluster/pgtest"
	"github.com/zenithdb/zenith/repo/pgdata"
)

func TestImportDataDir(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := pgtest.Start(t, map[string]string{"max_prepared_transactions": "4"})
	conn, err := pgx.Connect(ctx, c.ConnString("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	exec(t, conn, itemsSQL...)
	// A tablespace with a table of postgres and a database of its own.
	loc := filepath.Join(os.TempDir(), fmt.Sprintf("zenith-import-ts-%d", os.Getpid()))
	if err := pgcluster.PrepareDir(loc, c.User()); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(loc) })
	exec(t, conn,
		"CREATE TABLESPACE ts LOCATION '"+loc+"'",
		"CREATE TABLE in_ts (i int) TABLESPACE ts",
		"INSERT INTO in_ts SELECT generate_series(1, 1000)",
		"CREATE DATABASE db_in_ts TABLESPACE ts",
		"CREATE TABLE huge_toast (t text)",
		"INSERT INTO huge_toast SELECT string_agg(md5(g::text), '') FROM generate_series(1, 5000) g",
		"BEGIN",
		"INSERT INTO items VALUES (0, 'prepared')",
		"PREPARE TRANSACTION 'p1'",
	)
	conn.Close(ctx)
	if err := c.Stop(ctx, pgcluster.StopFast); err != nil {
		t.Fatal(err)
	}
	dir := c.DataDir()
	cf := readControl(t, dir)

	workdir := t.TempDir()
	r := openTestRepo(t, workdir)
	tn, tl := newTestTimeline(t, r)
	tid := tl.ID()
	var logBuf bytes.Buffer
	lsn, err := ImportDataDir(ctx, tl, dir, nil, zerolog.New(&logBuf))
	if err != nil {
		t.Fatal(err)
	}
	if want := (cf.CheckPoint + pgdata.CheckpointRecordSize).Align(); cf.CheckPoint.PageOffset()+pgdata.CheckpointRecordSize < pgdata.XLogBlockSize && lsn != want {
		t.Errorf("import LSN = %v, want the checkpoint record's end %v", lsn, want)
	}
	if got := tl.LastRecordLSN(); got != lsn {
		t.Errorf("LastRecordLSN = %v, want %v", got, lsn)
	}
	if got := tl.PrevRecordLSN(); got != cf.CheckPoint {
		t.Errorf("PrevRecordLSN = %v, want the checkpoint %v", got, cf.CheckPoint)
	}
	if !strings.Contains(logBuf.String(), "imported data directory") {
		t.Errorf("log has no summary line:\n%s", logBuf.String())
	}
	b, err := tl.Get(ctx, key.TablespaceDir(), lsn)
	if err != nil {
		t.Fatal(err)
	}
	if tss, err := datadir.DecodeTablespaceDir(b); err != nil || len(tss) != 1 || tss[0].Location != loc {
		t.Errorf("tablespaces %+v, %v; want one, at %s", tss, err, loc)
	}
	n := compareWithDataDir(t, tl, dir, lsn)
	t.Logf("compared %d values at %v", n, lsn)

	if err := tl.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r = openTestRepo(t, workdir)
	defer r.Close()
	tn, err = r.Tenant(tn.ID())
	if err != nil {
		t.Fatal(err)
	}
	if tl, err = tn.Timeline(tid); err != nil {
		t.Fatal(err)
	}
	if got := tl.LastRecordLSN(); got != lsn {
		t.Errorf("LastRecordLSN after reopening = %v, want %v", got, lsn)
	}
	compareWithDataDir(t, tl, dir, lsn)
}

func TestImportRefusesUncleanDataDir(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := pgtest.Start(t, nil)
	if err := c.Stop(ctx, pgcluster.StopImmediate); err != nil {
		t.Fatal(err)
	}
	r := openTestRepo(t, t.TempDir())
	defer r.Close()
	_, tl := newTestTimeline(t, r)
	_, err := ImportDataDir(ctx, tl, c.DataDir(), nil, zerolog.Nop())
	if !errors.Is(err, ErrNotShutDown) || !strings.Contains(err.Error(), "in production") {
		t.Fatalf("import of a crashed data directory: error = %v, want ErrNotShutDown naming the state", err)
	}
	if got := tl.LastRecordLSN(); got != 0 {
		t.Errorf("LastRecordLSN after a refused import = %v, want 0", got)
	}
}

// compareWithDataDir checks that tl at lsn holds exactly the files of the
// data directory dir that an import stores, and returns how many values it
// compared.
func compareWithDataDir(t *testing.T, tl *repo.Timeline, dir string, lsn pgdata.LSN) int {
	t.Helper()
	ctx := context.Background()
	compared := 0
	get := func(k key.Key) []byte {
		t.Helper()
		b, err := tl.Get(ctx, k, lsn)
		if err != nil {
			t.Fatalf("Get(%v, %v): %v", k, lsn, err)
		}
		compared++
		return b
	}
	same := func(what string, got, want []byte) {
		t.Helper()
		if !bytes.Equal(got, want) {
			t.Errorf("%s: stored %d bytes differ from the %d on disk", what, len(got), len(want))
		}
	}
	file := func(p string) []byte {
		t.Helper()
		b, err := os.ReadFile(filepath.Join(dir, p))
		if err != nil {
			t.Fatal(err)
		}
		return b
	}

	same("pg_control", get(key.Control()), file("global/pg_control"))
	cp, err := pgdata.ParseCheckPoint(get(key.Checkpoint()))
	if err != nil || cp != readControl(t, dir).CheckPointCopy {
		t.Errorf("stored checkpoint = %+v, %v; want pg_control's %+v", cp, err, readControl(t, dir).CheckPointCopy)
	}

	// Databases: global plus every base/<oid>, each with its relmapper
	// file and exactly the relation forks on disk, block for block.
	var wantDBs datadir.DBDir
	dbDirs := map[datadir.Database]string{{SpcNode: pgdata.GlobalTablespaceOID, DbNode: 0}: "global"}
	bases, err := os.ReadDir(filepath.Join(dir, "base"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range bases {
		var oid uint32
		if _, err := fmt.Sscan(e.Name(), &oid); err != nil {
			t.Fatalf("base/%s: %v", e.Name(), err)
		}
		dbDirs[datadir.Database{SpcNode: pgdata.DefaultTablespaceOID, DbNode: oid}] = "base/" + e.Name()
	}
	// And each database directory of each tablespace.
	inTablespaces, err := filepath.Glob(filepath.Join(dir, "pg_tblspc", "*", pgdata.TablespaceVersionDirectory, "*"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range inTablespaces {
		rel, _ := filepath.Rel(dir, p)
		var spc, oid uint32
		if _, err := fmt.Sscanf(rel, "pg_tblspc/%d/"+pgdata.TablespaceVersionDirectory+"/%d", &spc, &oid); err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		dbDirs[datadir.Database{SpcNode: spc, DbNode: oid}] = rel
	}
	for db := range dbDirs {
		wantDBs = append(wantDBs, db)
	}
	slices.SortFunc(wantDBs, datadir.CompareDatabase)
	gotDBs, err := datadir.DecodeDBDir(get(key.DBDir()))
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(gotDBs, wantDBs) {
		t.Errorf("databases = %v, want %v", gotDBs, wantDBs)
	}
	if len(wantDBs) < 7 {
		t.Errorf("only %d databases on disk: want global, template0, template1, postgres and second, and in tablespace ts postgres and db_in_ts", len(wantDBs))
	}

	// Forks with blocks, by fork: every fork kind the import must handle.
	nonEmpty := map[pgdata.ForkNumber]int{}
	for db, rel := range dbDirs {
		if _, err := os.Stat(filepath.Join(dir, rel, "pg_filenode.map")); err == nil || !strings.HasPrefix(rel, "pg_tblspc/") {
			same(rel+"/pg_filenode.map", get(key.RelMap(db.SpcNode, db.DbNode)), file(rel+"/pg_filenode.map"))
		}
		entries, err := os.ReadDir(filepath.Join(dir, rel))
		if err != nil {
			t.Fatal(err)
		}
		want := datadir.RelDir{}
		for _, e := range entries {
			r, fork, seg, err := pgdata.ParseRelationPath(rel + "/" + e.Name())
			if err != nil {
				continue
			}
			if seg != 0 {
				t.Fatalf("%s/%s: test data directories have no 1 GiB relations", rel, e.Name())
			}
			i, found := slices.BinarySearchFunc(want, datadir.RelEntry{RelNode: r.RelNode}, datadir.CompareRelEntry)
			if !found {
				want = slices.Insert(want, i, datadir.RelEntry{RelNode: r.RelNode})
			}
			want[i].Forks |= 1 << fork

			disk := file(rel + "/" + e.Name())
			nblocks := uint32(len(disk) / pgdata.BlockSize)
			if got, err := tl.RelSize(ctx, r, fork, lsn); err != nil || got != nblocks {
				t.Errorf("size of %s = %d, %v; want %d blocks", e.Name(), got, err, nblocks)
			}
			if nblocks > 0 {
				nonEmpty[fork]++
			}
			for b := range nblocks {
				same(fmt.Sprintf("%s/%s block %d", rel, e.Name(), b), get(key.RelBlock(r, fork, b)), disk[b*pgdata.BlockSize:(b+1)*pgdata.BlockSize])
			}
			if _, err := tl.Get(ctx, key.RelBlock(r, fork, nblocks), lsn); !errors.Is(err, repo.ErrKeyNotFound) {
				t.Errorf("%s/%s block %d, past the end: error = %v, want ErrKeyNotFound", rel, e.Name(), nblocks, err)
			}
		}
		got, err := datadir.DecodeRelDir(get(key.RelDir(db.SpcNode, db.DbNode)))
		if err != nil {
			t.Fatal(err)
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s: relation directory has %d entries, want %d: %v", rel, len(got), len(want), got)
		}
	}
	if nonEmpty[pgdata.ForkMain] == 0 || nonEmpty[pgdata.ForkFSM] == 0 || nonEmpty[pgdata.ForkVM] == 0 {
		t.Errorf("non-empty forks by kind: %v; the test wants main, fsm and vm forks", nonEmpty)
	}

	for _, s := range importSLRUs {
		entries, err := os.ReadDir(filepath.Join(dir, s.String()))
		if err != nil {
			t.Fatal(err)
		}
		var want datadir.SLRUDir
		for _, e := range entries {
			seg, err := datadir.ParseSLRUSegmentName(e.Name())
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, seg)
			disk := file(path.Join(s.String(), e.Name()))
			pages := uint32(len(disk) / pgdata.BlockSize)
			size := get(key.SLRUSegmentSize(s, seg))
			if len(size) != 4 || uint32(size[0])<<24|uint32(size[1])<<16|uint32(size[2])<<8|uint32(size[3]) != pages {
				t.Errorf("%s/%s: stored size %x, want %d pages", s, e.Name(), size, pages)
			}
			for b := range pages {
				same(fmt.Sprintf("%s/%s page %d", s, e.Name(), b), get(key.SLRUPage(s, seg, b)), disk[b*pgdata.BlockSize:(b+1)*pgdata.BlockSize])
			}
		}
		got, err := datadir.DecodeSLRUDir(get(key.SLRUDir(s)))
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("%s segments = %v, %v; want %v", s, got, err, want)
		}
	}

	twoPhase, err := os.ReadDir(filepath.Join(dir, "pg_twophase"))
	if err != nil {
		t.Fatal(err)
	}
	if len(twoPhase) != 1 {
		t.Fatalf("pg_twophase has %d files, want the one prepared transaction", len(twoPhase))
	}
	xid, err := datadir.ParseTwoPhaseName(twoPhase[0].Name())
	if err != nil {
		t.Fatal(err)
	}
	got2, err := datadir.DecodeTwoPhaseDir(get(key.TwoPhaseDir()))
	if err != nil || !slices.Equal(got2, datadir.TwoPhaseDir{xid}) {
		t.Errorf("two-phase directory = %v, %v; want [%d]", got2, err, xid)
	}
	same("pg_twophase file", get(key.TwoPhaseFile(xid)), file("pg_twophase/"+twoPhase[0].Name()))

	auxDir, err := datadir.DecodeAuxDirValue(get(key.AuxFile(datadir.AuxDirPath)))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"PG_VERSION", "base/1/PG_VERSION", "postgresql.conf", "postgresql.auto.conf", "pg_hba.conf"} {
		if _, found := slices.BinarySearch(auxDir, p); !found {
			t.Errorf("auxiliary files %v lack %s", auxDir, p)
		}
	}
	for _, p := range auxDir {
		gotPath, contents, err := datadir.DecodeAuxFile(get(key.AuxFile(p)))
		if err != nil || gotPath != p {
			t.Errorf("aux file %s: path %q, %v", p, gotPath, err)
			continue
		}
		same(p, contents, file(p))
		if strings.HasPrefix(p, "postmaster.") || strings.HasPrefix(p, "pg_wal") {
			t.Errorf("aux file %s should not have been imported", p)
		}
	}
	return compared
}
