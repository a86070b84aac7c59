package control_test

import (
	"context"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zenithdb/zenith/control/zenithtest"
	"github.com/zenithdb/zenith/repo/pgcluster/pgdump"
)

// Environment of TestLayerBudgetOracle.
const (
	// budgetScaleEnv is the pgbench scale (70: about 1 GiB); unset, the
	// test is skipped (scripts/budget-oracle sets it).
	budgetScaleEnv = "ZENITH_BUDGET_SCALE"
	// budgetMiBEnv is the page server's layer_disk_budget in MiB
	// (default 200).
	budgetMiBEnv = "ZENITH_BUDGET_MIB"
)

// TestLayerBudgetOracle is TestLayerDiskBudget at size, the long form
// the issue asks for: a pgbench database (scale $ZENITH_BUDGET_SCALE, 70
// for about 1 GiB), branched as loaded ("loaded") and then updated by a
// run of TPC-B, on a page server whose layer_disk_budget
// ($ZENITH_BUDGET_MIB, default 200 MiB) is a fraction of it, so that
// layers are evicted while the data is written. The tenant is detached
// and attached again (layers fetched as reads need them): re-created
// computes of main, of the branch (older layers, which push main's out
// past the budget) and of main again (its layers fetched again) must
// each dump as the live compute did at that point (pg_dumpall identity)
// and pg_amcheck must find every relation clean.
func TestLayerBudgetOracle(t *testing.T) {
	scale := os.Getenv(budgetScaleEnv)
	if scale == "" {
		t.Skipf("%s is unset: scripts/budget-oracle runs this test", budgetScaleEnv)
	}
	if n, err := strconv.Atoi(scale); err != nil || n < 1 {
		t.Fatalf("%s=%q: want a positive pgbench scale", budgetScaleEnv, scale)
	}
	budgetMiB := 200
	if s := os.Getenv(budgetMiBEnv); s != "" {
		n, err := strconv.Atoi(s)
		if err != nil || n < 1 {
			t.Fatalf("%s=%q: want a positive number of MiB", budgetMiBEnv, s)
		}
		budgetMiB = n
	}
	ctx := context.Background()
	env := zenithtest.New(t, &zenithtest.Options{Safekeepers: 1})
	cfg := setPageserverConfig(t, env, map[string]string{"layer_disk_budget": strconv.Itoa(budgetMiB << 20)})
	env.Zenith("pageserver", "stop")
	env.Zenith("pageserver", "start")
	tenant := defaultTenant(t, env)
	pg := env.Postgres.CreateStart("main")
	start := time.Now()
	pgbench(t, pg.ConnString+"?sslmode=disable", "-i", "-q", "-s", scale)
	conn := pg.Connect()
	// pg_amcheck --install-missing says NOTICE where amcheck exists
	// already (see TestLazyCompute).
	exec1(t, conn, "ALTER ROLE postgres SET client_min_messages = warning")
	exec1(t, conn, "CHECKPOINT")
	lsn := queryString(t, conn, "SELECT pg_current_wal_insert_lsn()::text")
	env.Zenith("branch", "loaded", "main@"+lsn)
	wantLoaded := dumpAndCheck(ctx, t, "the live compute after the load", pg)
	r := pgbench(t, pg.ConnString+"?sslmode=disable", "-T", "30", "-c", "4", "-j", "2")
	exec1(t, conn, "CHECKPOINT")
	var size int64
	if err := conn.QueryRow(ctx, "SELECT pg_database_size('postgres')").Scan(&size); err != nil {
		t.Fatal(err)
	}
	t.Logf("pgbench -i -s %s and %d TPC-B transactions in %v: database of %d MiB, layer_disk_budget %d MiB",
		scale, r.Processed, time.Since(start).Round(time.Second), size>>20, budgetMiB)
	want := dumpAndCheck(ctx, t, "the live compute", pg)
	conn.Close(ctx)
	pg.Stop()
	t.Logf("before the detach: %v layers evicted, %d MiB of layer files on the page server's disk",
		metric(t, cfg.ListenHTTP, "zenith_pageserver_layer_evictions_total"), layerBytes(t, env)>>20)

	env.Zenith("tenant", "detach", tenant)
	fetched := metric(t, cfg.ListenHTTP, "zenith_pageserver_layer_fetches_total")
	evicted := metric(t, cfg.ListenHTTP, "zenith_pageserver_layer_evictions_total")
	t0 := time.Now()
	out := env.Zenith("tenant", "attach", tenant)
	pg.Destroy()
	pg = env.Postgres.CreateStart("main")
	t.Logf("%s; attach to a compute started: %v", strings.TrimSpace(out), time.Since(t0).Round(time.Millisecond))
	var mainFetches float64
	for i, c := range []struct {
		branch string
		want   string
	}{{"main", want}, {"loaded", wantLoaded}, {"main", want}} {
		f0 := fetched // main's first compute started right after the attach
		if i > 0 {
			f0 = metric(t, cfg.ListenHTTP, "zenith_pageserver_layer_fetches_total")
			pg = env.Postgres.CreateStart(c.branch)
		}
		got := dumpAndCheck(ctx, t, "a compute of "+c.branch+" after the attach", pg)
		if err := pgdump.Compare(got, c.want).Err(); err != nil {
			t.Errorf("%s after the attach: pg_dumpall: %v", c.branch, err)
		}
		pg.Destroy()
		n := metric(t, cfg.ListenHTTP, "zenith_pageserver_layer_fetches_total") - f0
		// Evictions run after each upload round (every 10 s): wait for
		// the budget to hold before the next compute reads.
		for deadline := time.Now().Add(time.Minute); layerBytes(t, env) > int64(budgetMiB)<<20 && time.Now().Before(deadline); {
			time.Sleep(time.Second)
		}
		t.Logf("%s: %v layer files fetched by its compute; since the attach %v evicted; %d MiB of layer files on the disk",
			c.branch, n, metric(t, cfg.ListenHTTP, "zenith_pageserver_layer_evictions_total")-evicted, layerBytes(t, env)>>20)
		if i == 2 {
			mainFetches = n
		}
	}
	if metric(t, cfg.ListenHTTP, "zenith_pageserver_layer_evictions_total") == evicted || mainFetches == 0 {
		t.Errorf("since the attach %v layers evicted and main's second compute fetched %v: the reads never went past the budget of %d MiB, so no layer was fetched again (a smaller budget tests it)",
			metric(t, cfg.ListenHTTP, "zenith_pageserver_layer_evictions_total")-evicted, mainFetches, budgetMiB)
	}
	t.Logf("%v layer files fetched in all since the attach", metric(t, cfg.ListenHTTP, "zenith_pageserver_layer_fetches_total")-fetched)
}

// layerBytes is the size of the layer files under the page server's
// tenants directory (the files whose names hold a "__").
func layerBytes(t *testing.T, env *zenithtest.Env) int64 {
	t.Helper()
	var n int64
	err := filepath.WalkDir(filepath.Join(env.RepoDir, "pageserver", "tenants"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || !strings.Contains(d.Name(), "__") {
			return nil
		}
		if info, err := d.Info(); err == nil {
			n += info.Size()
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return n
}
