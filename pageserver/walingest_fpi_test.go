package pageserver_test

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/pageserver"
	"github.com/zenithdb/zenith/pageserver/datadir"
	"github.com/zenithdb/zenith/pageserver/pagecheck"
	"github.com/zenithdb/zenith/pageserver/pstest"
	"github.com/zenithdb/zenith/pageserver/walingest"
	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/pgcluster"
	"github.com/zenithdb/zenith/repo/pgcluster/pgtest"
	"github.com/zenithdb/zenith/repo/pgcluster/workload"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/value"
	"github.com/zenithdb/zenith/walredo"
)

// openCountingRepo opens a repository whose redo counts the pages it
// rebuilds (redo), with no compaction or GC, so that no image comes from
// elsewhere than the ingest; it is closed when the test ends. m is the
// redo processes' manager.
func openCountingRepo(t *testing.T) (*walredo.Manager, *countingRedo, *repo.Repository) {
	t.Helper()
	m := pageserver.OpenTestRedoManager(t)
	redo := &countingRedo{Redo: pageserver.NewRedo(m), keys: map[key.Key]int{}}
	cfg := repo.DefaultConfig(t.TempDir())
	cfg.Redo = redo
	cfg.CompactionInterval, cfg.GCInterval = 0, 0 // no image may come from elsewhere
	r, err := repo.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := r.Close(); err != nil {
			t.Errorf("close repository: %v", err)
		}
	})
	return m, redo, r
}

// countingRedo is a repo.Redo that counts the reconstructions it is asked
// for, by key.
type countingRedo struct {
	repo.Redo
	mu   sync.Mutex
	keys map[key.Key]int
}

// Apply implements repo.Redo.
func (r *countingRedo) Apply(ctx context.Context, tenant id.TenantID, k key.Key, base []byte, records []value.Record, lsn pgdata.LSN) ([]byte, error) {
	r.mu.Lock()
	r.keys[k]++
	r.mu.Unlock()
	return r.Redo.Apply(ctx, tenant, k, base, records, lsn)
}

// redone returns how many reconstructions of rel's main fork were asked
// for since the last call, and forgets them.
func (r *countingRedo) redone(rel pgdata.RelFileNode) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for k, c := range r.keys {
		if kr, fork, _, ok := k.RelBlock(); ok && kr == rel && fork == pgdata.ForkMain {
			n += c
		}
	}
	clear(r.keys)
	return n
}

// relFileNode returns the relation file node of the relation named rel
// and its file's path under the data directory.
func relFileNode(t *testing.T, conn *pgx.Conn, rel string) (pgdata.RelFileNode, string) {
	t.Helper()
	var n pgdata.RelFileNode
	var path string
	err := conn.QueryRow(context.Background(), `
		SELECT CASE WHEN c.reltablespace = 0 THEN d.dattablespace ELSE c.reltablespace END,
		       d.oid, pg_relation_filenode(c.oid), pg_relation_filepath(c.oid)
		FROM pg_class c, pg_database d
		WHERE c.oid = $1::regclass AND d.datname = current_database()`, rel).Scan(&n.SpcNode, &n.DbNode, &n.RelNode, &path)
	if err != nil {
		t.Fatalf("relation file node of %s: %v", rel, err)
	}
	return n, path
}

// TestIngestFullPageImages checks that the records made of full-page
// images alone are stored as the pages replay makes of them, so that
// reading those pages needs no redo: XLOG_FPI (every page of a freshly
// built index, log_newpage) and XLOG_FPI_FOR_HINT (the first hint bit set
// on a heap page after a checkpoint, with wal_log_hints). The index is
// compared byte for byte with the stopped server's file (pd_lsn
// included: _bt_blwritepage writes the page log_newpage stamped; only
// the free space, which the image leaves out, is zeroed first), both
// relations are read with no redo at all, and the page oracle compares
// every page of the database. Before the change, every page of both was
// rebuilt by redo. With wal_compression the images are compressed and
// still filed as records, which redo decompresses: the pages must be as
// right, each read a redo.
func TestIngestFullPageImages(t *testing.T) {
	pgtest.SkipIfShort(t)
	for _, tt := range []struct {
		compression string
		wantRedo    bool
	}{
		{"off", false},
		{"lz4", true},
	} {
		t.Run("wal_compression="+tt.compression, func(t *testing.T) {
			checkFullPageImages(t, tt.compression, tt.wantRedo)
		})
	}
}

// checkFullPageImages is TestIngestFullPageImages with wal_compression
// set to compression; wantRedo says whether reads of the image pages
// take redo.
func checkFullPageImages(t *testing.T, compression string, wantRedo bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()

	m, redo, r := openCountingRepo(t)
	settings := workload.Settings()
	settings["wal_log_hints"] = "on"
	settings["wal_compression"] = compression
	pg := pgtest.New(t, settings)
	tn, tl := pstest.NewTimeline(t, r)
	start, err := walingest.ImportDataDir(ctx, tl, pg.DataDir(), nil, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	if err := pg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	conn := pstest.Connect(t, pg, "postgres")
	pstest.Exec(t, conn,
		"CREATE TABLE fpi_indexed AS SELECT i, md5(i::text) AS s FROM generate_series(1, 20000) i",
		"CREATE INDEX fpi_index ON fpi_indexed (i)", // its scan of the table sets the table's hint bits
		"CREATE TABLE fpi_hinted AS SELECT i, md5(i::text) AS s FROM generate_series(1, 20000) i",
		"CHECKPOINT",
		"SELECT count(*) FROM fpi_hinted", // sets hint bits: an XLOG_FPI_FOR_HINT per page
	)
	index, indexPath := relFileNode(t, conn, "fpi_index")
	hinted, _ := relFileNode(t, conn, "fpi_hinted")
	cat := pagecheck.ReadCatalogs(ctx, t, pg.ConnString)
	conn.Close(ctx)
	if err := pg.Stop(ctx, pgcluster.StopFast); err != nil {
		t.Fatal(err)
	}

	ing, err := walingest.NewWalIngest(ctx, tl, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	images := map[pgdata.RelFileNode]map[uint8]int{} // records of images by relation and info
	pageserver.IngestWALEach(t, ing, filepath.Join(pg.DataDir(), "pg_wal"), start, func(rec *pgdata.Record) {
		if !rec.IsPageImageRecord() {
			return
		}
		for _, b := range rec.Blocks {
			if images[b.Rel] == nil {
				images[b.Rel] = map[uint8]int{}
			}
			images[b.Rel][rec.RmgrInfo()]++
		}
	})
	if n := images[index][pgdata.XLogFPI]; n == 0 {
		t.Errorf("no XLOG_FPI image of the index was ingested: the build should log its pages so")
	}
	if n := images[hinted][pgdata.XLogFPIForHint]; n == 0 {
		t.Errorf("no XLOG_FPI_FOR_HINT image of the table was ingested: wal_log_hints should log them")
	}
	redo.redone(index) // forget the reads of the ingest itself

	lsn := tl.LastRecordLSN()
	file, err := os.ReadFile(filepath.Join(pg.DataDir(), indexPath))
	if err != nil {
		t.Fatal(err)
	}
	size := readSize(ctx, t, tl, index, lsn)
	if want := uint32(len(file) / pgdata.BlockSize); size != want || size == 0 {
		t.Fatalf("index has %d blocks, its file %d", size, want)
	}
	for blk := range size {
		got, err := tl.Get(ctx, key.RelBlock(index, pgdata.ForkMain, blk), lsn)
		if err != nil {
			t.Fatal(err)
		}
		want := bytes.Clone(file[blk*pgdata.BlockSize : (blk+1)*pgdata.BlockSize])
		// The image leaves out the free space, pd_lower to pd_upper, and
		// replay fills it with zeros; the build may leave bytes there (an
		// item pointer it took back when it moved the last item on).
		lower, upper := binary.LittleEndian.Uint16(want[12:]), binary.LittleEndian.Uint16(want[14:])
		clear(want[lower:upper])
		if !bytes.Equal(got, want) {
			t.Errorf("index block %d differs from the file's with its free space zeroed (pd_lsn %v, file's %v)",
				blk, pgdata.PageLSN(got), pgdata.PageLSN(want))
		}
	}
	if n := redo.redone(index); (n != 0) != wantRedo {
		t.Errorf("reading the %d pages of a freshly built index took %d redo requests; want some: %v", size, n, wantRedo)
	}
	hintedSize := readSize(ctx, t, tl, hinted, lsn)
	for blk := range hintedSize {
		if _, err := tl.Get(ctx, key.RelBlock(hinted, pgdata.ForkMain, blk), lsn); err != nil {
			t.Fatal(err)
		}
	}
	if n := redo.redone(hinted); (n != 0) != wantRedo {
		t.Errorf("reading the %d pages of a table whose hint bits were logged took %d redo requests; want some: %v", hintedSize, n, wantRedo)
	}
	t.Logf("read %d index pages and %d heap pages", size, hintedSize)

	o := pagecheck.New(ctx, t, m, tn.ID().String(), datadir.NewDatadirReader(tl, lsn), pg.DataDir(), cat)
	o.CheckDatabases()
	o.Report(fmt.Sprintf("values compared at %v", lsn))
}

// readSize returns the size in blocks of rel's main fork at lsn.
func readSize(ctx context.Context, t *testing.T, tl *repo.Timeline, rel pgdata.RelFileNode, lsn pgdata.LSN) uint32 {
	t.Helper()
	b, err := tl.Get(ctx, key.RelSize(rel, pgdata.ForkMain), lsn)
	if err != nil {
		t.Fatalf("size of %v: %v", rel, err)
	}
	n, err := value.DecodeSize(b)
	if err != nil {
		t.Fatalf("size of %v: %v", rel, err)
	}
	return n
}
