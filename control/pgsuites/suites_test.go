package pgsuites_test

import (
	"context"
	"encoding/json"
	"fmt"
	"maps"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zenithdb/zenith/control/pgsuites"
	"github.com/zenithdb/zenith/control/zenithtest"
	"github.com/zenithdb/zenith/repo/pgcluster"
	"github.com/zenithdb/zenith/repo/pgcluster/pgtest"
)

// settings are the server settings both the stock cluster and the compute
// node run the suites with, beyond the compute's own: prepared
// transactions on, so that the suites' two-phase tests run (with the
// default 0 they take their "disabled" expected output on both).
var settings = map[string]string{"max_prepared_transactions": "10"}

// statementTimeout bounds each statement of the suites: a commit that
// waits forever for a page server that stopped ingesting shows as a
// failed test, not a hung suite.
const statementTimeout = 3 * time.Minute

// exclude is $ZENITH_PGSUITES_EXCLUDE, comma-separated test names left
// out of both suites on stock and compute alike: for looking past a test
// that hangs on the compute (a test left out is reported, never passed).
func exclude(t *testing.T) []string {
	v := os.Getenv("ZENITH_PGSUITES_EXCLUDE")
	if v == "" {
		return nil
	}
	t.Logf("ZENITH_PGSUITES_EXCLUDE: leaving out %s", v)
	return strings.Split(v, ",")
}

// sources returns the prepared suites, or skips the test saying loudly why
// (scripts/test prints skips).
func sources(t *testing.T) pgsuites.Sources {
	t.Helper()
	src, err := pgsuites.FindSources()
	if err != nil {
		t.Skipf("SKIPPED, NOT PASSED: %v", err)
	}
	return src
}

// stock starts a stock PostgreSQL 15 cluster of the same binaries.
func stock(t *testing.T, settings map[string]string) (pgsuites.Target, *pgcluster.Cluster) {
	t.Helper()
	c := pgtest.Start(t, settings)
	return pgsuites.Target{Host: "127.0.0.1", Port: c.Port(), User: pgcluster.DefaultSuperuser, BinDir: c.BinDir()}, c
}

// computeTarget is the target of a compute node's connection string.
func computeTarget(t *testing.T, connString, binDir string) pgsuites.Target {
	t.Helper()
	u, err := url.Parse(connString)
	if err != nil {
		t.Fatalf("compute connection string %q: %v", connString, err)
	}
	port, err := strconv.Atoi(u.Port())
	if err != nil {
		t.Fatalf("compute connection string %q: port: %v", connString, err)
	}
	return pgsuites.Target{Host: u.Hostname(), Port: port, User: u.User.Username(), BinDir: binDir}
}

// runCompute runs suite s on the compute, stopped early if its commits
// stall (stallWatch).
func runCompute(ctx context.Context, src pgsuites.Sources, s pgsuites.Suite, pg *zenithtest.Postgres, target pgsuites.Target, o pgsuites.RunOptions) (*pgsuites.Result, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var w stallWatch
	go w.watch(ctx, pg.ConnString, cancel)
	o.OutputDir = filepath.Join(o.OutputDir, s.Name+"-compute")
	r, err := pgsuites.Run(ctx, s, src, target, o)
	if reason := w.Reason(); reason != "" {
		return r, fmt.Errorf("stopped: %s\n%v", reason, err)
	}
	return r, err
}

// runOne runs suite s on the compute and fails the test if it could not
// run or was stopped.
func runOne(ctx context.Context, t *testing.T, src pgsuites.Sources, s pgsuites.Suite, pg *zenithtest.Postgres, target pgsuites.Target, o pgsuites.RunOptions) *pgsuites.Result {
	t.Helper()
	r, err := runCompute(ctx, src, s, pg, target, o)
	if err != nil {
		t.Fatalf("%s suite on the compute: %v", s.Name, err)
	}
	t.Logf("compute: %s", r.Summary())
	return r
}

// runBoth runs suite s against stock and the compute at the same time.
func runBoth(ctx context.Context, t *testing.T, src pgsuites.Sources, s pgsuites.Suite, stockT pgsuites.Target, pg *zenithtest.Postgres, computeT pgsuites.Target, o pgsuites.RunOptions) (stock, compute *pgsuites.Result) {
	t.Helper()
	var wg sync.WaitGroup
	var res [2]*pgsuites.Result
	var errs [2]error
	wg.Add(1)
	go func() {
		defer wg.Done()
		oi := o
		oi.OutputDir = filepath.Join(o.OutputDir, s.Name+"-stock")
		res[0], errs[0] = pgsuites.Run(ctx, s, src, stockT, oi)
	}()
	res[1], errs[1] = runCompute(ctx, src, s, pg, computeT, o)
	wg.Wait()
	for i, name := range []string{"stock", "compute"} {
		if errs[i] != nil {
			t.Fatalf("%s suite on %s: %v", s.Name, name, errs[i])
		}
		t.Logf("%s: %s", name, res[i].Summary())
	}
	return res[0], res[1]
}

// maxDiffLines bounds the regression.diffs lines shown per test.
const maxDiffLines = 80

// compare fails the test unless the same tests of s fail on stock and on
// the compute; it shows the diffs of tests failing on the compute only.
func compare(t *testing.T, s pgsuites.Suite, stock, compute *pgsuites.Result) {
	t.Helper()
	// Equal sets of failures mean nothing if the suite could not run at
	// all (a missing module, a server that refused the driver): stock
	// must pass nearly everything.
	if n := len(stock.Passed) + len(stock.Failed); len(stock.Failed) > n/10 {
		t.Fatalf("%s: stock PostgreSQL fails %d of %d tests: the environment is broken, the comparison would say nothing:\n%s",
			s.Name, len(stock.Failed), n, stock.Output)
	}
	onlyCompute, onlyStock := pgsuites.Compare(compute, stock)
	for _, n := range onlyCompute {
		d := strings.Split(compute.Diffs[n], "\n")
		if len(d) > maxDiffLines {
			d = append(d[:maxDiffLines], fmt.Sprintf("... %d more lines", len(d)-maxDiffLines))
		}
		t.Errorf("%s test %s fails on the compute only:\n%s", s.Name, n, strings.Join(d, "\n"))
	}
	if len(onlyStock) > 0 {
		t.Errorf("%s tests fail on stock only: %v", s.Name, onlyStock)
	}
	if len(onlyCompute) == 0 && len(onlyStock) == 0 {
		t.Logf("%s: the same %d tests fail on stock and on the compute", s.Name, len(stock.Failed)+len(stock.Ignored))
	}
}

// TestSuites is PostgreSQL's own regression and isolation suites as the
// oracle for breadth. Both suites run against a stock PostgreSQL 15
// cluster of the same binaries and against a compute node, once without
// safekeepers and once with three; the sets of failing tests must be
// equal (a test failing on stock for reasons of the environment, such as
// test sources older than the binaries, may fail on the compute, no other
// may). Then, with the suites' databases kept, checkRebuilt: a branch at
// the LSN where the suites ended, and the compute re-created from the
// page server, each dump what the live compute dumps, and pg_amcheck finds
// the re-created one clean. Last, zenith waldump --stats over the WAL the
// suites wrote: no record of a type that ingest does not support.
//
// $ZENITH_PGSUITES_SAFEKEEPERS (default "0,3") chooses the compute's
// configurations, $ZENITH_PGSUITES (default "regress,isolation") the
// suites and $ZENITH_PGSUITES_MODE (eager or lazy, default eager) the
// mode of the compute nodes: on lazy nodes everything above runs through
// FUSE, and the page oracle on an eager re-creation (eagerForPages says
// why). scripts/test runs a short form, scripts/pgsuites the long one.
func TestSuites(t *testing.T) {
	if testing.Short() {
		t.Skip("runs PostgreSQL's regression and isolation suites")
	}
	src := sources(t)
	t.Logf("PostgreSQL test suites %s from %s", src.Version(), src.Dir)
	configs := safekeeperCounts(t)
	mode := computeMode(t)
	suites := chosenSuites(t)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Minute)
	defer cancel()

	stockSettings := maps.Clone(settings)
	// Every segment the suites write stays in pg_wal for waldump.
	stockSettings["wal_keep_size"] = "8GB"
	stockT, stockPG := stock(t, stockSettings)
	out := outputDir(t)
	o := pgsuites.RunOptions{StatementTimeout: statementTimeout, Exclude: exclude(t)}
	stockRes := map[string]*pgsuites.Result{}
	for _, sk := range configs {
		t.Run(fmt.Sprintf("safekeepers=%d", sk), func(t *testing.T) {
			env := zenithtest.New(t, &zenithtest.Options{Safekeepers: sk})
			pg := startNode(t, env, "main", mode)
			computeT := computeTarget(t, pg.ConnString, stockT.BinDir)
			for _, s := range suites {
				start := time.Now()
				oi := o
				oi.OutputDir = filepath.Join(out, fmt.Sprintf("sk%d", sk))
				if stockRes[s.Name] == nil {
					// The first configuration runs stock at the same time.
					var computeRes *pgsuites.Result
					stockRes[s.Name], computeRes = runBoth(ctx, t, src, s, stockT, pg, computeT, oi)
					compare(t, s, stockRes[s.Name], computeRes)
				} else {
					compare(t, s, stockRes[s.Name], runOne(ctx, t, src, s, pg, computeT, oi))
				}
				t.Logf("%s suite: %v", s.Name, time.Since(start).Round(time.Second))
			}
			start := time.Now()
			re := checkRebuilt(ctx, t, env, pg, stockT.BinDir, mode)
			t.Logf("rebuilt computes checked: %v", time.Since(start).Round(time.Second))
			start = time.Now()
			if mode == modeLazy {
				re = eagerForPages(t, env, re)
			}
			checkPages(ctx, t, env, re, stockT.BinDir)
			t.Logf("pages checked: %v", time.Since(start).Round(time.Second))
		})
	}
	waldumpStats(ctx, t, filepath.Join(stockPG.DataDir(), "pg_wal"))
}

// chosenSuites is $ZENITH_PGSUITES: the suites to run, comma-separated
// ("regress,isolation" by default).
func chosenSuites(t *testing.T) []pgsuites.Suite {
	v := os.Getenv("ZENITH_PGSUITES")
	if v == "" {
		return []pgsuites.Suite{pgsuites.Regress, pgsuites.Isolation}
	}
	var suites []pgsuites.Suite
	for _, name := range strings.Split(v, ",") {
		switch strings.TrimSpace(name) {
		case pgsuites.Regress.Name:
			suites = append(suites, pgsuites.Regress)
		case pgsuites.Isolation.Name:
			suites = append(suites, pgsuites.Isolation)
		default:
			t.Fatalf("ZENITH_PGSUITES=%q: want regress, isolation or both, comma-separated", v)
		}
	}
	t.Logf("ZENITH_PGSUITES: running %s only", v)
	return suites
}

// safekeeperCounts is $ZENITH_PGSUITES_SAFEKEEPERS: the numbers of
// safekeepers to run the compute with, comma-separated.
func safekeeperCounts(t *testing.T) []int {
	v := os.Getenv("ZENITH_PGSUITES_SAFEKEEPERS")
	if v == "" {
		return []int{0, 3}
	}
	var counts []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err != nil || n < 0 {
			t.Fatalf("ZENITH_PGSUITES_SAFEKEEPERS=%q: want comma-separated counts such as 0,3", v)
		}
		counts = append(counts, n)
	}
	t.Logf("ZENITH_PGSUITES_SAFEKEEPERS: compute with %v safekeepers", counts)
	return counts
}

// Compute modes of $ZENITH_PGSUITES_MODE.
const (
	// modeEager nodes hold a full copy of their relation files (pg start
	// --eager); the default, so that scripts/test takes no longer.
	modeEager = "eager"
	// modeLazy nodes serve their relation files through FUSE, each block
	// fetched from the page server on first read (pg start's default as
	// root).
	modeLazy = "lazy"
)

// computeMode is $ZENITH_PGSUITES_MODE: the mode of the compute nodes the
// suites, the dumps and pg_amcheck run on (eager by default). Lazy mode
// needs root and /dev/fuse; where zenith cannot mount FUSE the test fails
// rather than pass on an eager node (mustMode).
func computeMode(t *testing.T) string {
	t.Helper()
	switch v := os.Getenv("ZENITH_PGSUITES_MODE"); v {
	case "", modeEager:
		return modeEager
	case modeLazy:
		t.Logf("ZENITH_PGSUITES_MODE: lazy compute nodes (relation files through FUSE)")
		return modeLazy
	default:
		t.Fatalf("ZENITH_PGSUITES_MODE=%q: want eager or lazy", v)
		return ""
	}
}

// startNode starts a compute node on branch in mode, with the suites'
// settings, and fails the test unless zenith made it in that mode (pg
// start falls back to eager where it cannot mount FUSE).
func startNode(t *testing.T, env *zenithtest.Env, branch, mode string) *zenithtest.Postgres {
	t.Helper()
	pg := env.Postgres.CreateStart(branch, settingArgs(mode)...)
	mustMode(t, env, pg, mode)
	return pg
}

// mustMode fails the test unless pg list says node pg runs in mode.
func mustMode(t *testing.T, env *zenithtest.Env, pg *zenithtest.Postgres, mode string) {
	t.Helper()
	var rows []struct {
		Name   string `json:"name"`
		Mode   string `json:"mode"`
		Status string `json:"status"`
	}
	if err := json.Unmarshal([]byte(env.Zenith("pg", "list", "--json")), &rows); err != nil {
		t.Fatalf("zenith pg list --json: %v", err)
	}
	for _, r := range rows {
		if r.Name == pg.Name {
			if r.Mode != mode || r.Status != "running" {
				t.Fatalf("%s is %s and %s, want %s and running (lazy mode needs root and /dev/fuse: see zenith doctor)", pg, r.Mode, r.Status, mode)
			}
			return
		}
	}
	t.Fatalf("zenith pg list has no node %s", pg.Name)
}

// settingArgs are pg start's arguments for a node in mode with the
// suites' settings.
func settingArgs(mode string) []string {
	var args []string
	if mode == modeEager {
		args = append(args, "--eager")
	}
	for k, v := range settings {
		args = append(args, "-c", k+"="+v)
	}
	return args
}

// outputDir is a directory for the suites' results, removed at the end
// unless $ZENITH_KEEP_TEST_DIRS is set.
func outputDir(t *testing.T) string {
	t.Helper()
	out, err := os.MkdirTemp("", "zenith-pgsuites-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(out, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if os.Getenv("ZENITH_KEEP_TEST_DIRS") != "" {
			t.Logf("ZENITH_KEEP_TEST_DIRS is set: keeping %s", out)
			return
		}
		os.RemoveAll(out)
	})
	return out
}
