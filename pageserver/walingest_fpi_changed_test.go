package pageserver_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/pageserver"
	"github.com/zenithdb/zenith/pageserver/datadir"
	"github.com/zenithdb/zenith/pageserver/pagecheck"
	"github.com/zenithdb/zenith/pageserver/pstest"
	"github.com/zenithdb/zenith/pageserver/walingest"
	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/pgcluster"
	"github.com/zenithdb/zenith/repo/pgcluster/pgtest"
	"github.com/zenithdb/zenith/repo/pgcluster/workload"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// onePerPage is a TID list naming the first tuple of every page of the
// table %s: a statement with "WHERE ctid = ANY (...)" changes each page
// once.
const onePerPage = `ARRAY(SELECT format('(%%s,1)', b)::tid FROM generate_series(0, pg_relation_size('%s') / 8192 - 1) b)`

// TestIngestChangedPageImages checks that the full-page image a page's
// first change after a checkpoint carries is stored as the page replay
// makes of it when the record's resource manager leaves a restored page
// as it is (heap, btree), so that a page changed once since the checkpoint
// is read with no redo: heap HOT updates (clearing visibility-map bits in
// the same record), deletes and the pruning a scan does, and btree leaf
// inserts. Each table is loaded and imported first, and each of its pages
// then changed by one record with an image. GiST and hash records, whose
// redo changes a restored page (gistRedoClearFollowRight, hash splits),
// keep their images as records: reading those indexes takes redo. With
// wal_compression the images are compressed and filed as records too. The
// page oracle compares every page of the database with the stopped
// server's files.
func TestIngestChangedPageImages(t *testing.T) {
	pgtest.SkipIfShort(t)
	for _, tt := range []struct {
		compression string
		wantRedo    bool
	}{
		{"off", false},
		{"lz4", true},
	} {
		t.Run("wal_compression="+tt.compression, func(t *testing.T) {
			checkChangedPageImages(t, tt.compression, tt.wantRedo)
		})
	}
}

// checkChangedPageImages is TestIngestChangedPageImages with
// wal_compression set to compression; wantRedo says whether reads of the
// heap and btree pages take redo.
func checkChangedPageImages(t *testing.T, compression string, wantRedo bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	m, redo, r := openCountingRepo(t)
	settings := workload.Settings()
	settings["wal_compression"] = compression
	pg := pgtest.New(t, settings)
	if err := pg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	conn := pstest.Connect(t, pg, "postgres")
	pstest.Exec(t, conn,
		"CREATE TABLE fpi_upd (i int, n int, s text) WITH (fillfactor = 50)",
		"INSERT INTO fpi_upd SELECT i, 0, md5(i::text) FROM generate_series(1, 5000) i",
		"CREATE TABLE fpi_del AS SELECT i, md5(i::text) AS s FROM generate_series(1, 5000) i",
		"CREATE TABLE fpi_prune (i int, n int, s text)",
		"INSERT INTO fpi_prune SELECT i, 0, md5(i::text) FROM generate_series(1, 5000) i",
		"CREATE TABLE fpi_bt AS SELECT i * 2 AS i FROM generate_series(1, 20000) i",
		"CREATE INDEX fpi_bt_i ON fpi_bt (i)",
		"CREATE TABLE fpi_gist AS SELECT point(i, i) AS p FROM generate_series(1, 5000) i",
		"CREATE INDEX fpi_gist_p ON fpi_gist USING gist (p)",
		"CREATE TABLE fpi_hash AS SELECT i FROM generate_series(1, 5000) i",
		"CREATE INDEX fpi_hash_i ON fpi_hash USING hash (i)",
		"VACUUM", // sets every page's visibility-map bits and hint bits
		// Full pages: each new version goes to another page and leaves
		// a dead one that a later scan prunes.
		"UPDATE fpi_prune SET n = 1 WHERE ctid = ANY ("+fmt.Sprintf(onePerPage, "fpi_prune")+")",
	)
	conn.Close(ctx)
	if err := pg.Stop(ctx, pgcluster.StopFast); err != nil {
		t.Fatal(err)
	}
	tn, tl := pstest.NewTimeline(t, r)
	start, err := walingest.ImportDataDir(ctx, tl, pg.DataDir(), nil, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if err := pg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	conn = pstest.Connect(t, pg, "postgres")
	pstest.Exec(t, conn,
		"CHECKPOINT",
		// HOT updates, each clearing its page's visibility-map bits.
		"UPDATE fpi_upd SET n = 1 WHERE ctid = ANY ("+fmt.Sprintf(onePerPage, "fpi_upd")+")",
		"DELETE FROM fpi_del WHERE ctid = ANY ("+fmt.Sprintf(onePerPage, "fpi_del")+")",
		"SELECT count(*) FROM fpi_prune", // heap_page_prune_opt on every page with a dead version
		// Odd keys 2,000 apart: a leaf holds about 400 keys.
		"INSERT INTO fpi_bt SELECT i FROM generate_series(1001, 39001, 2000) i",
		"INSERT INTO fpi_gist SELECT point(i, i) FROM generate_series(1, 5000, 500) i",
		"INSERT INTO fpi_hash SELECT i FROM generate_series(1, 5000, 500) i",
	)
	rels := map[string]pgdata.RelFileNode{}
	for _, name := range []string{"fpi_upd", "fpi_del", "fpi_prune", "fpi_bt_i", "fpi_gist_p", "fpi_hash_i"} {
		rels[name], _ = relFileNode(t, conn, name)
	}
	cat := pagecheck.ReadCatalogs(ctx, t, pg.ConnString)
	conn.Close(ctx)
	if err := pg.Stop(ctx, pgcluster.StopFast); err != nil {
		t.Fatal(err)
	}

	ing, err := walingest.NewWalIngest(ctx, tl, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	// Applied images by relation and record type.
	images := map[pgdata.RelFileNode]map[string]int{}
	pageserver.IngestWALEach(t, ing, filepath.Join(pg.DataDir(), "pg_wal"), start, func(rec *pgdata.Record) {
		for _, b := range rec.Blocks {
			if !b.HasImage || !b.ApplyImage || b.Fork != pgdata.ForkMain {
				continue
			}
			if images[b.Rel] == nil {
				images[b.Rel] = map[string]int{}
			}
			images[b.Rel][rec.TypeName()]++
		}
	})
	for _, c := range []struct{ rel, typ string }{
		{"fpi_upd", "HOT_UPDATE"},
		{"fpi_del", "DELETE"},
		{"fpi_prune", "PRUNE"},
		{"fpi_bt_i", "INSERT_LEAF"},
		{"fpi_gist_p", "PAGE_UPDATE"},
		{"fpi_hash_i", "INSERT"},
	} {
		if images[rels[c.rel]][c.typ] == 0 {
			t.Errorf("no %s record with an applied image of %s was ingested; images by type: %v", c.typ, c.rel, images[rels[c.rel]])
		}
	}
	redo.redone(rels["fpi_upd"]) // forget the reads of the ingest itself

	lsn := tl.LastRecordLSN()
	read := func(name string) (pages, redone int) {
		rel := rels[name]
		size := readSize(ctx, t, tl, rel, lsn)
		for blk := range size {
			if _, err := tl.Get(ctx, key.RelBlock(rel, pgdata.ForkMain, blk), lsn); err != nil {
				t.Fatal(err)
			}
		}
		return int(size), redo.redone(rel)
	}
	var names []string
	for name := range rels {
		names = append(names, name)
	}
	sort.Strings(names)
	for _, name := range names {
		pages, n := read(name)
		want := wantRedo
		if name == "fpi_gist_p" || name == "fpi_hash_i" {
			want = true // their images stay records, whatever the compression
		}
		if (n != 0) != want {
			t.Errorf("reading the %d pages of %s took %d redo requests; want some: %v (images by type: %v)",
				pages, name, n, want, images[rels[name]])
		} else {
			t.Logf("%s: %d pages read, %d redo requests", name, pages, n)
		}
	}

	o := pagecheck.New(ctx, t, m, tn.ID().String(), datadir.NewDatadirReader(tl, lsn), pg.DataDir(), cat)
	o.CheckDatabases()
	o.Report(fmt.Sprintf("values compared at %v", lsn))
}
