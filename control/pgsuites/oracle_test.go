package pgsuites_test

import (
	"context"
	"encoding/json"
	"fmt"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/zenithdb/zenith/control/zenithtest"
	"github.com/zenithdb/zenith/repo/pgcluster/pgdump"
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
func checkRebuilt(ctx context.Context, t *testing.T, env *zenithtest.Env, pg *zenithtest.Postgres, binDir, mode string) *zenithtest.Postgres {
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
	b := startNode(t, env, "suites_end", mode)
	check("a branch at "+lsn, dumpAll(ctx, t, "the branch at "+lsn, server(t, b, binDir)))
	b.Destroy()

	pg.Destroy()
	re := startNode(t, env, "main", mode)
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

// walStats is what zenith waldump --stats --json prints.
type walStats struct {
	Records     int    `json:"records"`
	Start       string `json:"start"`
	End         string `json:"end"`
	Ingested    int    `json:"ingested"`
	Ignored     int    `json:"ignored"`
	Unsupported int    `json:"unsupported"`
	Types       []struct {
		Rmgr     string `json:"rmgr"`
		Type     string `json:"type"`
		Count    int    `json:"count"`
		Handling string `json:"handling"`
		How      string `json:"how"`
	} `json:"types"`
}

// waldumpStats runs zenith waldump --stats over dir (WAL the suites
// wrote), prints the count of every record type with what ingest does
// with it, and fails the test if any record written is of a type that
// ingest does not support.
func waldumpStats(ctx context.Context, t *testing.T, dir string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, zenithtest.Binary(t), "waldump", "--stats", "--json", dir)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, runErr := cmd.Output() // exit status 1 when a record is unsupported
	var s walStats
	if err := json.Unmarshal(out, &s); err != nil || s.Records == 0 {
		t.Fatalf("zenith waldump --stats --json %s: %v, %v\n%s%s", dir, runErr, err, out, stderr.String())
	}
	var b strings.Builder
	fmt.Fprintf(&b, "zenith waldump --stats over the suites' WAL (%s, %s to %s): %d records, %d ingested, %d ignored, %d unsupported",
		dir, s.Start, s.End, s.Records, s.Ingested, s.Ignored, s.Unsupported)
	var unsupported []string
	for _, ty := range s.Types {
		fmt.Fprintf(&b, "\n  %9d  %-12s %-24s %s", ty.Count, ty.Rmgr, ty.Type, ty.Handling)
		if !strings.EqualFold(ty.Handling, "ingested") && !strings.EqualFold(ty.Handling, "ignored") {
			unsupported = append(unsupported, fmt.Sprintf("%d %s/%s: %s (%s)", ty.Count, ty.Rmgr, ty.Type, ty.Handling, ty.How))
		}
	}
	t.Log(b.String())
	if len(unsupported) > 0 || s.Unsupported > 0 {
		t.Errorf("the suites wrote %d WAL records that ingest does not support:\n%s", s.Unsupported, strings.Join(unsupported, "\n"))
	}
}
