package control

import (
	"context"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/zenithdb/zenith/pageserver/walingest"
	"github.com/zenithdb/zenith/repo/pgcluster"
	"github.com/zenithdb/zenith/repo/pgcluster/pgtest"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// TestWaldumpStatsReal runs `zenith waldump --stats` over the WAL of a
// real PostgreSQL 15: records the page server ignores are counted as
// such, and once the WAL holds a record ingest refuses (CREATE
// TABLESPACE, while tablespaces are unsupported), the table calls it out
// and the command fails.
func TestWaldumpStatsReal(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pg := pgtest.Start(t, nil)
	conn, err := pgx.Connect(ctx, pg.ConnString("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	exec := func(sql string) {
		t.Helper()
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	exec("CREATE TABLE t (i int)")
	exec("INSERT INTO t SELECT generate_series(1, 100)")
	exec("SELECT pg_logical_emit_message(true, 'zenith', 'hello')")
	walDir := filepath.Join(pg.DataDir(), "pg_wal")

	stdout, stderr, err := runZenith("waldump", "--stats", walDir)
	if err != nil {
		t.Fatalf("zenith waldump --stats: %v\n%s", err, stderr)
	}
	for _, want := range []string{"LogicalMessage/MESSAGE", "ignored", "Heap/INSERT", "ingested", " 0 unsupported"} {
		if !strings.Contains(stdout, want) {
			t.Errorf("zenith waldump --stats does not say %q:\n%s", want, stdout)
		}
	}

	ts := filepath.Join(filepath.Dir(pg.DataDir()), "ts")
	if err := pgcluster.PrepareDir(ts, pg.User()); err != nil {
		t.Fatal(err)
	}
	exec("CREATE TABLESPACE ts LOCATION '" + ts + "'")
	stdout, _, err = runZenith("waldump", "--stats", walDir)
	if walingest.ClassifyRecord(pgdata.RmgrTablespace, 0x00).Handling != walingest.Unsupported {
		// Tablespaces became supported: nothing else PostgreSQL 15 writes
		// is unsupported, so only the success is left to check.
		if err != nil || !strings.Contains(stdout, "Tablespace/CREATE") {
			t.Errorf("zenith waldump --stats after CREATE TABLESPACE: %v\n%s", err, stdout)
		}
		return
	}
	if !errors.Is(err, ErrUnsupportedRecords) || !strings.Contains(err.Error(), "Tablespace/CREATE (1)") {
		t.Errorf("zenith waldump --stats after CREATE TABLESPACE: err = %v, want %v naming Tablespace/CREATE (1)", err, ErrUnsupportedRecords)
	}
	if !strings.Contains(stdout, "UNSUPPORTED: CREATE TABLESPACE") || !strings.Contains(stdout, " 1 unsupported") {
		t.Errorf("zenith waldump --stats does not call out the tablespace record:\n%s", stdout)
	}
}
