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
// for about 1 GiB) loaded and updated by a run of TPC-B on a page server
// whose layer_disk_budget ($ZENITH_BUDGET_MIB, default 200 MiB) is a
// fraction of it, so that layers are evicted while the data is written.
// The tenant is detached and attached again (layers fetched as reads
// need them, and evicted again past the budget): a re-created compute
// must dump as the live one did (pg_dumpall identity) and pg_amcheck must
// find every relation clean, twice, the second time after the first
// round's reads were evicted.
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
	r := pgbench(t, pg.ConnString+"?sslmode=disable", "-T", "30", "-c", "4", "-j", "2")
	conn := pg.Connect()
	// pg_amcheck --install-missing says NOTICE where amcheck exists
	// already (see TestLazyCompute).
	exec1(t, conn, "ALTER ROLE postgres SET client_min_messages = warning")
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
	evicted := metric(t, cfg.ListenHTTP, "zenith_pageserver_layer_evictions_total")
	t.Logf("before the detach: %v layers evicted, %d MiB of layer files on the page server's disk", evicted, layerBytes(t, env)>>20)

	env.Zenith("tenant", "detach", tenant)
	fetched := metric(t, cfg.ListenHTTP, "zenith_pageserver_layer_fetches_total")
	t0 := time.Now()
	out := env.Zenith("tenant", "attach", tenant)
	pg.Destroy()
	pg = env.Postgres.CreateStart("main")
	t.Logf("%s; attach to a compute started: %v", strings.TrimSpace(out), time.Since(t0).Round(time.Millisecond))
	for round := 1; round <= 2; round++ {
		got := dumpAndCheck(ctx, t, "the compute after the attach", pg)
		if err := pgdump.Compare(got, want).Err(); err != nil {
			t.Errorf("round %d after the attach: pg_dumpall of main: %v", round, err)
		}
		t.Logf("round %d: %v layer files fetched since the attach, %v evicted in all, %d MiB of layer files on the disk",
			round, metric(t, cfg.ListenHTTP, "zenith_pageserver_layer_fetches_total")-fetched,
			metric(t, cfg.ListenHTTP, "zenith_pageserver_layer_evictions_total"), layerBytes(t, env)>>20)
		pg.Destroy()
		if round == 2 {
			break
		}
		pg = env.Postgres.CreateStart("main")
	}
	if size > int64(budgetMiB)<<20 && metric(t, cfg.ListenHTTP, "zenith_pageserver_layer_evictions_total") == 0 {
		t.Errorf("a database of %d MiB and a budget of %d MiB, and no layer was evicted: the test tested nothing", size>>20, budgetMiB)
	}
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
