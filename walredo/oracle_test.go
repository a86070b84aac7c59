package walredo

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/zenithdb/zenith/repo/pgcluster"
	"github.com/zenithdb/zenith/repo/pgcluster/pgtest"
	"github.com/zenithdb/zenith/repo/pgcluster/workload"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/value"
)

// oracleDB is the database the workload runs in, created with STRATEGY
// WAL_LOG: every page of it has a WAL history that starts with a
// full-page image or a record that initializes the page.
const oracleDB = "zw_redo_oracle"

// TestPageOracle is the redo oracle: a real PostgreSQL 15 runs the mixed
// workload and is stopped cleanly; then every block of every relation of
// the workload's database is rebuilt from its WAL history through
// walredo (PostgreSQL's redo in our processes, plus the visibility-map
// bits applied in Go) and compared with the real page after the masking
// of the resource manager's rm_mask; every pg_xact and pg_multixact page
// is rebuilt in Go and compared byte for byte. The few pages PostgreSQL
// itself never WAL-logs are counted under the reason (see exceptions).
func TestPageOracle(t *testing.T) {
	if testing.Short() {
		t.Skip("runs PostgreSQL 15 and the mixed workload")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Minute)
	defer cancel()

	pg := pgtest.New(t, workload.Settings())
	// Before the first start: the SLRUs as initdb left them, and the
	// checkpoint their WAL history starts after.
	ctrl := readControlFile(t, pg.DataDir())
	slruBase := readSLRUs(t, pg.DataDir())
	if err := pg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	dbOID := createOracleDB(ctx, t, pg)
	began := time.Now()
	if _, err := workload.Run(ctx, pg.ConnString(oracleDB), workload.Options{Seed: 3}); err != nil {
		t.Fatalf("workload: %v", err)
	}
	t.Logf("workload ran in %v", time.Since(began).Round(time.Millisecond))
	rels := readRelations(ctx, t, pg.ConnString(oracleDB))
	if err := pg.Stop(ctx, pgcluster.StopFast); err != nil {
		t.Fatal(err)
	}

	h := readHistory(t, filepath.Join(pg.DataDir(), "pg_wal"), ctrl.CheckPoint, dbOID)
	t.Logf("WAL from %v to %v: %d records, %d blocks of database %d with a history",
		ctrl.CheckPoint, h.end, h.records, len(h.blocks), dbOID)

	m := openTestManager(t, func(c *Config) { c.ProcessesPerTenant = 2 })
	t.Run("relations", func(t *testing.T) {
		checkRelations(ctx, t, m, pg.DataDir(), dbOID, rels, h)
	})
	t.Run("slru", func(t *testing.T) {
		checkSLRUs(t, pg.DataDir(), slruBase, h)
	})
}

func readControlFile(t *testing.T, dataDir string) *pgdata.ControlFile {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dataDir, "global", "pg_control"))
	if err != nil {
		t.Fatal(err)
	}
	c, err := pgdata.ParseControlFile(b)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

func createOracleDB(ctx context.Context, t *testing.T, pg *pgcluster.Cluster) uint32 {
	t.Helper()
	conn, err := pgx.Connect(ctx, pg.ConnString("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	if _, err := conn.Exec(ctx, "CREATE DATABASE "+oracleDB+" STRATEGY WAL_LOG"); err != nil {
		t.Fatal(err)
	}
	var oid uint32
	if err := conn.QueryRow(ctx, "SELECT oid FROM pg_database WHERE datname = $1", oracleDB).Scan(&oid); err != nil {
		t.Fatal(err)
	}
	return oid
}

// relation is what the catalog says about a relfilenode of the oracle
// database.
type relation struct {
	name        string
	kind        string // relkind
	am          string // access method, "" for sequences
	persistence string // relpersistence
	increment   int64  // of a sequence
}

func readRelations(ctx context.Context, t *testing.T, connString string) map[uint32]relation {
	t.Helper()
	conn, err := pgx.Connect(ctx, connString)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `
		SELECT pg_relation_filenode(c.oid)::int8, c.relname, c.relkind::text, coalesce(am.amname, ''),
		       c.relpersistence::text, coalesce(s.seqincrement, 0)
		FROM pg_class c
		LEFT JOIN pg_am am ON am.oid = c.relam
		LEFT JOIN pg_sequence s ON s.seqrelid = c.oid
		WHERE pg_relation_filenode(c.oid) IS NOT NULL`)
	if err != nil {
		t.Fatal(err)
	}
	rels := map[uint32]relation{}
	for rows.Next() {
		var node int64
		var r relation
		if err := rows.Scan(&node, &r.name, &r.kind, &r.am, &r.persistence, &r.increment); err != nil {
			t.Fatal(err)
		}
		rels[uint32(node)] = r
	}
	if err := rows.Err(); err != nil {
		t.Fatal(err)
	}
	return rels
}

// step is one entry of a page's history.
type step struct {
	lsn   pgdata.LSN // end of the record
	wal   []byte     // the record, for PostgreSQL's redo; or
	op    value.Op   // an operation applied in Go
	inits bool       // rebuilds the page from nothing
	zero  bool       // (SLRU) the page is zeroed
}

type slruPage struct {
	kind PageKind
	page uint32
}

// history is every page's WAL history, in LSN order.
type history struct {
	end     pgdata.LSN
	records int
	blocks  map[BufferTag][]step
	slru    map[slruPage][]step
}

// readHistory reads the WAL from start on and files every record under the
// blocks of database dbOID it references, and every Go-applied change under
// its page, the way the page server's ingest does. A relation truncation
// forgets the history of the blocks it removes.
func readHistory(t *testing.T, walDir string, start pgdata.LSN, dbOID uint32) *history {
	t.Helper()
	r, err := pgdata.OpenWAL([]string{walDir}, pgdata.WALReadOptions{Start: start})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	h := &history{blocks: map[BufferTag][]step{}, slru: map[slruPage][]step{}}
	for {
		rec, err := r.Next()
		var eow *pgdata.EndOfWALError
		if errors.As(err, &eow) {
			break
		}
		if err != nil {
			t.Fatalf("read WAL: %v", err)
		}
		h.records++
		h.end = rec.EndLSN
		var raw []byte // copied once, shared by every block of the record
		for i := range rec.Blocks {
			b := &rec.Blocks[i]
			if b.Rel.DbNode != dbOID {
				continue
			}
			if raw == nil {
				raw = append([]byte(nil), rec.Raw...)
			}
			tag := BufferTag{Rel: b.Rel, Fork: b.Fork, Block: b.Block}
			h.blocks[tag] = append(h.blocks[tag], step{lsn: rec.EndLSN, wal: raw, inits: b.WillInit || b.ApplyImage})
		}
		ops, err := OpsForRecord(rec)
		if err != nil {
			t.Fatalf("record at %v: %v", rec.LSN, err)
		}
		for _, op := range ops {
			s := step{lsn: rec.EndLSN, op: op.Op, zero: op.Zero, inits: op.Zero}
			if op.Kind == PageVisibilityMap {
				if op.Rel.DbNode == dbOID {
					tag := BufferTag{Rel: op.Rel, Fork: pgdata.ForkVM, Block: op.Page}
					h.blocks[tag] = append(h.blocks[tag], s)
				}
				continue
			}
			k := slruPage{op.Kind, op.Page}
			h.slru[k] = append(h.slru[k], s)
		}
		if rec.Rmgr() == pgdata.RmgrStorage && rec.RmgrInfo() == pgdata.XLogSmgrTruncate {
			tr, err := pgdata.ParseSmgrTruncate(rec)
			if err != nil {
				t.Fatal(err)
			}
			h.truncate(tr)
		}
	}
	return h
}

// truncate forgets the blocks a relation truncation removes: if the file
// grows again, their history starts anew.
func (h *history) truncate(tr pgdata.SmgrTruncate) {
	vmKeep := pgdata.VMBlock(tr.Blocks)
	if tr.Blocks%pgdata.VMHeapBlocksPerPage != 0 {
		vmKeep++
	}
	for tag := range h.blocks {
		if tag.Rel != tr.Rel {
			continue
		}
		if (tag.Fork == pgdata.ForkMain && tr.Flags&pgdata.SmgrTruncateHeap != 0 && tag.Block >= tr.Blocks) ||
			(tag.Fork == pgdata.ForkVM && tr.Flags&pgdata.SmgrTruncateVM != 0 && tag.Block >= vmKeep) {
			delete(h.blocks, tag)
		}
	}
}
