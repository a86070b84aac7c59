package pgwaldump_test

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/zenithdb/zenith/repo/pgcluster"
	"github.com/zenithdb/zenith/repo/pgcluster/pgtest"
	"github.com/zenithdb/zenith/repo/pgcluster/pgwaldump"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// TestRun reads a real cluster's WAL with pg_waldump: from a record
// boundary to the end of valid WAL (the shutdown checkpoint), from the
// middle of a record, and up to an end LSN.
func TestRun(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	c := pgtest.Start(t, map[string]string{"wal_compression": "zstd"})
	conn, err := pgx.Connect(ctx, c.ConnString("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	var startText string
	err = conn.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&startText)
	if err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{
		"CHECKPOINT",
		"CREATE TABLE t (id int PRIMARY KEY, v text)",
		"INSERT INTO t SELECT g, md5(g::text) FROM generate_series(1, 2000) g",
		"VACUUM t",
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	conn.Close(ctx)
	if err := c.Stop(ctx, pgcluster.StopFast); err != nil {
		t.Fatal(err)
	}
	control, err := c.ControlData(ctx)
	if err != nil {
		t.Fatal(err)
	}
	shutdown, err := pgdata.ParseLSN(control["Latest checkpoint location"])
	if err != nil {
		t.Fatal(err)
	}
	start, err := pgdata.ParseLSN(startText)
	if err != nil {
		t.Fatal(err)
	}
	walDir := filepath.Join(c.DataDir(), "pg_wal")

	all, err := pgwaldump.Run(ctx, pgwaldump.Options{BinDir: c.BinDir(), WALDir: walDir, Start: start})
	if err != nil {
		t.Fatal(err)
	}
	recs := all.Records
	if len(recs) < 2000 {
		t.Fatalf("%d records, want >= 2000 (one per inserted row at least)", len(recs))
	}
	if recs[0].LSN != start || all.FirstRecord != 0 {
		t.Errorf("first record at %v (FirstRecord %v), want %v", recs[0].LSN, all.FirstRecord, start)
	}
	for i := 1; i < len(recs); i++ {
		if recs[i].Prev != recs[i-1].LSN {
			t.Fatalf("record %v: prev %v, want the previous record %v", recs[i].LSN, recs[i].Prev, recs[i-1].LSN)
		}
	}
	last := recs[len(recs)-1]
	if last.LSN != shutdown || !strings.HasPrefix(last.Desc, "CHECKPOINT_SHUTDOWN") {
		t.Errorf("last record %v %q, want the shutdown checkpoint at %v", last.LSN, last.Desc, shutdown)
	}
	if !strings.Contains(all.EndOfWAL, "invalid record length") {
		t.Errorf("EndOfWAL = %q, want pg_waldump's end-of-WAL complaint", all.EndOfWAL)
	}
	var zstd int
	for _, r := range recs {
		for _, b := range r.Blocks {
			if b.FPW && b.Compression == "zstd" {
				zstd++
			}
		}
	}
	if zstd == 0 {
		t.Errorf("no zstd-compressed image with wal_compression=zstd")
	}

	// From inside a record: pg_waldump skips to the next one.
	mid := recs[len(recs)/2]
	inside, err := pgwaldump.Run(ctx, pgwaldump.Options{BinDir: c.BinDir(), WALDir: walDir, Start: mid.LSN + 1})
	if err != nil {
		t.Fatal(err)
	}
	next := recs[len(recs)/2+1]
	if inside.FirstRecord != next.LSN || inside.Records[0].LSN != next.LSN {
		t.Errorf("start inside record %v: FirstRecord %v, first %v; want %v", mid.LSN, inside.FirstRecord, inside.Records[0].LSN, next.LSN)
	}
	if got, want := len(inside.Records), len(recs)-len(recs)/2-1; got != want {
		t.Errorf("start inside record %v: %d records, want %d", mid.LSN, got, want)
	}

	// Up to an end LSN: the records that end by then, and no complaint.
	upTo, err := pgwaldump.Run(ctx, pgwaldump.Options{BinDir: c.BinDir(), WALDir: walDir, Start: start, End: next.LSN})
	if err != nil {
		t.Fatal(err)
	}
	if got := upTo.Records[len(upTo.Records)-1].LSN; got != mid.LSN || upTo.EndOfWAL != "" {
		t.Errorf("with End %v: last record %v, EndOfWAL %q; want %v and none", next.LSN, got, upTo.EndOfWAL, mid.LSN)
	}

	// A start where there is no WAL is an error carrying pg_waldump's words.
	_, err = pgwaldump.Run(ctx, pgwaldump.Options{BinDir: c.BinDir(), WALDir: walDir, Start: 0xFF000000})
	if err == nil || !strings.Contains(err.Error(), "pg_waldump: error") {
		t.Errorf("reading WAL that does not exist: %v, want pg_waldump's error", err)
	}
}
