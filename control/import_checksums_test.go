package control_test

import (
	"context"
	"strconv"
	"testing"
	"time"

	"github.com/zenithdb/zenith/control/zenithtest"
	"github.com/zenithdb/zenith/repo/pgcluster"
	"github.com/zenithdb/zenith/repo/pgcluster/pgdump"
	"github.com/zenithdb/zenith/repo/pgcluster/pgtest"
)

// TestImportWithDataChecksums imports a cluster with data checksums
// (pg_checksums --enable), changes every page of it on a compute, and
// starts new computes, lazy and eager: PostgreSQL checks each page's
// checksum as it reads it, and pages the page server rebuilt by redo
// carried stale ones ("invalid page in block 0 of relation
// base/5/1259": no compute could start after the first one wrote).
func TestImportWithDataChecksums(t *testing.T) {
	pgtest.SkipIfShort(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	stock := pgtest.New(t, map[string]string{"wal_level": "replica"})
	if out, err := stock.Command(ctx, "pg_checksums", "--enable", "--no-sync", "-D", stock.DataDir()).CombinedOutput(); err != nil {
		t.Fatalf("pg_checksums --enable: %v\n%s", err, out)
	}
	if err := stock.Start(ctx); err != nil {
		t.Fatal(err)
	}
	pgbench := stock.Command(ctx, "pgbench", "-i", "-s", "1", "-q", "-h", "127.0.0.1", "-p", strconv.Itoa(stock.Port()), "-U", "postgres", "postgres")
	if out, err := pgbench.CombinedOutput(); err != nil {
		t.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	if err := stock.Stop(ctx, pgcluster.StopFast); err != nil {
		t.Fatal(err)
	}

	env := zenithtest.New(t, nil)
	env.Zenith("import", stock.DataDir(), "--branch", "sums")
	writer := env.Postgres.CreateStart("sums")
	conn := writer.Connect()
	if got := queryString(t, conn, "SHOW data_checksums"); got != "on" {
		t.Fatalf("data_checksums on the compute: %s, want on", got)
	}
	for _, sql := range []string{
		// pg_amcheck --install-missing says NOTICE where amcheck
		// exists, which pgdump.Amcheck takes for a finding (see
		// TestLazyCompute).
		"ALTER ROLE postgres SET client_min_messages = warning",
		"UPDATE pgbench_accounts SET abalance = abalance + aid % 13",
		"UPDATE pgbench_branches SET bbalance = 7",
		"CREATE INDEX ON pgbench_accounts (abalance)",
		"CREATE TABLE fresh AS SELECT g, md5(g::text) AS h FROM generate_series(1, 20000) g",
		"VACUUM",
		"CHECKPOINT",
	} {
		exec1(t, conn, sql)
	}
	conn.Close(ctx)
	want := dumpAndCheck(ctx, t, "the compute that wrote", writer)
	writer.Stop()

	for _, mode := range []string{"lazy", "eager"} {
		args := []string{"--name", mode}
		if mode == "eager" {
			args = append(args, "--eager")
		}
		pg := env.Postgres.CreateStart("sums", args...)
		if d := dumpAndCheck(ctx, t, "a new "+mode+" compute", pg); pgdump.Compare(d, want).Err() != nil {
			t.Errorf("a new %s compute: %v", mode, pgdump.Compare(d, want).Err())
		}
		pg.Stop()
	}
}
