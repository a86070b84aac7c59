package pgsuites_test

import (
	"context"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zenithdb/zenith/control/pgcluster/pgdump"
	"github.com/zenithdb/zenith/control/zenithtest"
)

// dumpTimeout bounds one pg_dumpall or pg_amcheck of the suites'
// databases.
const dumpTimeout = 10 * time.Minute

// server is the pgdump.Server of a compute node.
func server(t *testing.T, pg *zenithtest.Postgres, binDir string) pgdump.Server {
	t.Helper()
	target := computeTarget(t, pg.ConnString, binDir)
	return pgdump.Server{Host: target.Host, Port: target.Port, User: target.User, BinDir: binDir}
}

func dumpAll(ctx context.Context, t *testing.T, what string, s pgdump.Server) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, dumpTimeout)
	defer cancel()
	start := time.Now()
	d, err := pgdump.DumpAll(ctx, s)
	if err != nil {
		t.Fatalf("%s: %v", what, err)
	}
	t.Logf("pg_dumpall of %s: %d bytes, %v", what, len(d), time.Since(start).Round(time.Second))
	return d
}

// checkRebuilt checks what the page server holds after the suites, with
// their databases kept: a branch at the LSN where they ended and the
// compute re-created from the page server (pg stop --destroy, pg start)
// each dump what the live compute dumps (pgdump.Compare: sequences may be
// logged ahead), and pg_amcheck --heapallindexed finds the re-created
// compute clean. It returns the re-created compute.
func checkRebuilt(ctx context.Context, t *testing.T, env *zenithtest.Env, pg *zenithtest.Postgres, binDir string) *zenithtest.Postgres {
	t.Helper()
	conn := pg.Connect()
	var lsn string
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&lsn); err != nil {
		t.Fatalf("pg_current_wal_lsn: %v", err)
	}
	conn.Close(ctx)
	live := dumpAll(ctx, t, "the live compute", server(t, pg, binDir))
	t.Logf("the suites ended at %s", lsn)

	check := func(what string, got string) {
		t.Helper()
		c := pgdump.Compare(got, live)
		if err := c.Err(); err != nil {
			t.Errorf("pg_dumpall of %s differs from the live compute's:\n%v", what, err)
			return
		}
		t.Logf("pg_dumpall of %s equals the live compute's (%d sequences compared)", what, c.Sequences)
	}

	env.Zenith("branch", "suites_end", "main@"+lsn)
	b := env.Postgres.CreateStart("suites_end", settingArgs()...)
	check("a branch at "+lsn, dumpAll(ctx, t, "the branch at "+lsn, server(t, b, binDir)))
	b.Destroy()

	pg.Destroy()
	re := env.Postgres.CreateStart("main", settingArgs()...)
	rs := server(t, re, binDir)
	check("the re-created compute", dumpAll(ctx, t, "the re-created compute", rs))
	actx, cancel := context.WithTimeout(ctx, dumpTimeout)
	defer cancel()
	start := time.Now()
	if err := pgdump.Amcheck(actx, rs); err != nil {
		t.Errorf("the re-created compute: %v", err)
	} else {
		t.Logf("pg_amcheck --heapallindexed: every database of the re-created compute clean (%v)", time.Since(start).Round(time.Second))
	}
	return re
}

// countLine finds the counts on a line of waldump --stats.
var countLine = regexp.MustCompile(`\b\d+\b`)

// waldumpStats runs zenith waldump --stats over dir (WAL the suites
// wrote), prints the counts, and fails the test if any line that says
// "unsupported" carries a count other than zero.
func waldumpStats(ctx context.Context, t *testing.T, dir string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, zenithtest.Binary(t), "waldump", "--stats", dir)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("zenith waldump --stats %s: %v\n%s", dir, err, stderr.String())
	}
	t.Logf("zenith waldump --stats over the suites' WAL (%s):\n%s%s", dir, out, stderr.String())
	var unsupported []string
	for _, line := range strings.Split(string(out), "\n") {
		if !strings.Contains(strings.ToLower(line), "unsupported") {
			continue
		}
		for _, n := range countLine.FindAllString(line, -1) {
			if v, _ := strconv.Atoi(n); v > 0 {
				unsupported = append(unsupported, line)
				break
			}
		}
	}
	if len(unsupported) > 0 {
		t.Errorf("the suites wrote WAL records that ingest does not support:\n%s", strings.Join(unsupported, "\n"))
	}
}
