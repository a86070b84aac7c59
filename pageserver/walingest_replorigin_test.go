package pageserver

import (
	"bytes"
	"context"
	"maps"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/zenithdb/zenith/pageserver/datadir"
	"github.com/zenithdb/zenith/repo/pgcluster"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// TestReplOriginsIngestOracle ingests the WAL of a real PostgreSQL 15 that
// sets, drops and advances replication origins every way it can (SET and
// DROP records; commit, prepare and abort records of a session with an
// origin), and compares the pg_logical/replorigin_checkpoint the page
// server keeps with the one PostgreSQL wrote at its shutdown checkpoint.
// It failed before ingest kept the file (none was stored).
func TestReplOriginsIngestOracle(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	r := openRedoRepo(t)
	defer r.Close()
	src, _, tl, importLSN := importStartedCluster(ctx, t, r)
	conn, err := pgx.Connect(ctx, src.ConnString("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{
		"CREATE TABLE t (i int)",
		"SELECT pg_replication_origin_create('o' || g) FROM generate_series(1, 5) g",
		"SELECT pg_replication_origin_advance('o1', '0/AB000000')",
		"SELECT pg_replication_origin_advance('o3', '0/1000')",
		"SELECT pg_replication_origin_drop('o3')",
		// A commit of a session with an origin.
		"SELECT pg_replication_origin_session_setup('o2')",
		"BEGIN",
		"SELECT pg_replication_origin_xact_setup('0/CD000000', now())",
		"INSERT INTO t VALUES (1)",
		"COMMIT",
		"SELECT pg_replication_origin_session_reset()",
		// A prepared transaction's.
		"SELECT pg_replication_origin_session_setup('o4')",
		"BEGIN",
		"SELECT pg_replication_origin_xact_setup('0/EF000000', now())",
		"INSERT INTO t VALUES (2)",
		"PREPARE TRANSACTION 'p'",
		"SELECT pg_replication_origin_session_reset()",
		"COMMIT PREPARED 'p'",
		// An abort's.
		"SELECT pg_replication_origin_session_setup('o5')",
		"BEGIN",
		"SELECT pg_replication_origin_xact_setup('0/12000000', now())",
		"INSERT INTO t VALUES (3)",
		"ROLLBACK",
		"SELECT pg_replication_origin_session_reset()",
		// Backwards, as pg_replication_origin_advance may go.
		"SELECT pg_replication_origin_advance('o1', '0/AA000000')",
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	conn.Close(ctx)
	if err := src.Stop(ctx, pgcluster.StopFast); err != nil {
		t.Fatal(err)
	}
	wantFile, err := os.ReadFile(filepath.Join(src.DataDir(), pgdata.ReplOriginCheckpointPath))
	if err != nil {
		t.Fatal(err)
	}
	want, err := pgdata.ParseReplOriginCheckpoint(wantFile)
	if err != nil {
		t.Fatalf("PostgreSQL's own file: %v", err)
	}
	// The states are in slot order in PostgreSQL's file, which here is
	// the order of the ids: the encoder must write the same bytes.
	if enc := want.Encode(); !bytes.Equal(enc, wantFile) {
		t.Errorf("PostgreSQL's replorigin_checkpoint, parsed and encoded again:\n%x\nthe file:\n%x", enc, wantFile)
	}
	// A session that sets up an origin gives it a state at remote LSN 0
	// (replorigin_session_setup, not WAL-logged): PostgreSQL writes it at
	// a checkpoint, but crash recovery from an earlier one would not have
	// it either, and it means no progress.
	maps.DeleteFunc(want, func(_ uint16, lsn pgdata.LSN) bool { return lsn == 0 })
	if len(want) < 3 {
		t.Fatalf("PostgreSQL tracks %d origins (%v): the test set up more", len(want), want)
	}

	ingestAll(ctx, t, tl, filepath.Join(src.DataDir(), "pg_wal"), importLSN)
	gotFile, err := datadir.NewDatadirReader(tl, tl.LastRecordLSN()).AuxFile(ctx, pgdata.ReplOriginCheckpointPath)
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgdata.ParseReplOriginCheckpoint(gotFile)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(got, want) {
		t.Errorf("replication origins after ingest: %v, PostgreSQL's: %v", got, want)
	}
}
