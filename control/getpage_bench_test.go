package control_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zenithdb/zenith/control/lazyfs"
	"github.com/zenithdb/zenith/control/zenithtest"
	"github.com/zenithdb/zenith/pageserver"
	"github.com/zenithdb/zenith/pageserver/api"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/pgcluster"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// benchScaleEnv sets BenchmarkGetPage's pgbench scale (default 10).
const benchScaleEnv = "ZENITH_BENCH_SCALE"

// BenchmarkGetPage measures GetPage@LSN over the page service as a lazy
// compute's FUSE server issues it (lazyfs.PageClient, the page stream),
// after Neon's pagebench: a pgbench database loaded through an eager
// compute, then concurrent page streams requesting single blocks of
// pgbench_accounts at the branch's last record LSN, at random or in
// order, or at random among the first hotBlocks blocks ("hot": pages the
// page server has cached, so the cost of a request itself). Each
// request is one round trip (a compute's read of a block not fetched
// yet); in the batch mode one round trip carries 32 pipelined blocks in
// order (a read-ahead), and its latency is the batch's. It prints
// throughput, p50/p99/p99.9 latency and the page server's CPU time per
// page (user and system, from /proc: it moves less with the machine's
// load than the latencies) as a table and reports them as metrics. The
// page server's caches are as the runs before leave them; the first run
// of each mode meets pages the page server has not rebuilt yet. Every
// mode runs twice: right after the load ("load": a block's first read is
// a redo of the load's records) and at rest ("rest": the idle
// compaction has imaged the load, and the page server was restarted, so
// its page cache starts empty).
//
//	go test -run '^$' -bench GetPage -benchtime 20000x ./control/
//	ZENITH_BENCH_SCALE=70 go test -run '^$' -bench GetPage ./control/
func BenchmarkGetPage(b *testing.B) {
	scale := 10
	if v := os.Getenv(benchScaleEnv); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 {
			b.Fatalf("%s=%q: want a positive pgbench scale", benchScaleEnv, v)
		}
		scale = n
	}
	env := zenithtest.New(b, nil)
	pg := env.Postgres.CreateStart("main", "--eager")
	ctx := context.Background()
	pgbench := exec.CommandContext(ctx, filepath.Join(pgcluster.DefaultBinDir, "pgbench"), "-i", "-q", "-s", strconv.Itoa(scale), pg.ConnString+"?sslmode=disable")
	if out, err := pgbench.CombinedOutput(); err != nil {
		b.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	conn := pg.Connect()
	var rel pgdata.RelFileNode
	var tenant string
	var blocks int64
	if err := conn.QueryRow(ctx, `SELECT coalesce(nullif(reltablespace, 0), (SELECT dattablespace FROM pg_database WHERE datname = current_database()))::bigint,
		(SELECT oid FROM pg_database WHERE datname = current_database())::bigint, pg_relation_filenode(oid)::bigint,
		pg_relation_size(oid) / 8192, current_setting('zenith.tenant_id') FROM pg_class WHERE relname = 'pgbench_accounts'`).
		Scan(&rel.SpcNode, &rel.DbNode, &rel.RelNode, &blocks, &tenant); err != nil {
		b.Fatal(err)
	}
	pg.Stop()
	t, err := id.ParseTenantID(tenant)
	if err != nil {
		b.Fatal(err)
	}
	var branches []api.BranchInfo
	if err := json.Unmarshal([]byte(env.Zenith("branch", "list", "--json")), &branches); err != nil || len(branches) != 1 {
		b.Fatalf("zenith branch list: %v, %d branches", err, len(branches))
	}
	lsn := branches[0].LastRecordLSN
	client, err := lazyfs.NewPageClient(lazyfs.PageClientOptions{Addr: env.PageserverAddr,
		Stream: api.PageStream{Tenant: t, Timeline: "main"}, Timeout: time.Minute})
	if err != nil {
		b.Fatal(err)
	}
	defer client.Close() // Close is idempotent; the second pass makes another
	pidFile := filepath.Join(env.RepoDir, "pageserver.pid")
	cpu := processCPU(b, pidFile)
	psConf, err := pageserver.LoadConfig(filepath.Join(env.RepoDir, "pageserver", pageserver.ConfigFileName))
	if err != nil {
		b.Fatal(err)
	}
	redos := func() float64 { return metric(b, psConf.ListenHTTP, "zenith_pageserver_redo_seconds_count") }
	settled := settle(cpu, time.Second)

	// Two states of the page server, each through every mode: right
	// after the load (its pages are the load's records until the idle
	// compaction images them: a first read of a block is a redo), then
	// at rest (the idle compaction done, the page server restarted so
	// that its page cache holds nothing the first pass rebuilt).
	// The testing package runs each sub-benchmark with b.N = 1 first:
	// the table keeps each one's last run.
	var rows []getPageRow
	pass := func(state string) {
		for _, mode := range []string{"sequential", "random", "hot", "batch"} {
			for _, clients := range []int{1, 4} {
				i := len(rows)
				rows = append(rows, getPageRow{state: state})
				b.Run(fmt.Sprintf("%s/%s/clients=%d", state, mode, clients), func(b *testing.B) {
					rows[i] = runGetPage(b, client, cpu, redos, lsn, rel, uint32(blocks), mode, clients)
					rows[i].state = state
				})
			}
		}
	}
	pass("load")
	rested := settle(cpu, restQuiet)
	client.Close()
	env.Zenith("pageserver", "stop")
	env.Zenith("pageserver", "start")
	cpu = processCPU(b, pidFile)
	settle(cpu, time.Second) // the restart's own work
	if client, err = lazyfs.NewPageClient(lazyfs.PageClientOptions{Addr: env.PageserverAddr,
		Stream: api.PageStream{Tenant: t, Timeline: "main"}, Timeout: time.Minute}); err != nil {
		b.Fatal(err)
	}
	defer client.Close()
	pass("rest")

	fmt.Printf("\nGetPage@LSN over the page stream: pgbench scale %d, pgbench_accounts %d blocks (%.0f MiB), at %s (%d CPUs, shared)\n",
		scale, blocks, float64(blocks)*8192/(1<<20), lsn, runtime.NumCPU())
	fmt.Printf("load: the page server settled for %v after the load (%s)\n", settled.Round(100*time.Millisecond), settleNote(settled))
	fmt.Printf("rest: then quiet for %v (%s), and restarted\n", restQuiet, settleNote(rested))
	fmt.Printf("%-6s %-12s %8s %10s %12s %10s %10s %10s %12s %6s\n", "state", "order", "clients", "requests", "pages/s", "p50", "p99", "p99.9", "server CPU", "redo")
	for _, r := range rows {
		fmt.Printf("%-6s %-12s %8d %10d %12.0f %10s %10s %10s %9.1fµs %5.0f%%\n", r.state, r.mode, r.clients, r.requests, r.rate,
			r.p50.Round(time.Microsecond), r.p99.Round(time.Microsecond), r.p999.Round(time.Microsecond), r.cpuPerPage, 100*r.redoShare)
	}
	fmt.Println("(server CPU: the page server's, per page; redo: the share of pages it rebuilt by WAL redo. On a busy\n" +
		" machine the idle compaction, which images the load, may come during the load state's later modes.)")
}

// getPageRow is one line of BenchmarkGetPage's table.
type getPageRow struct {
	state          string // "load" or "rest"
	mode           string
	clients        int
	requests       int
	rate           float64
	p50, p99, p999 time.Duration
	// cpuPerPage is the page server's CPU time per page, in µs.
	cpuPerPage float64
	// redoShare is the share of the pages rebuilt by WAL redo.
	redoShare float64
}

// settleMax bounds how long BenchmarkGetPage waits for the page server
// to finish with the load's WAL (ingest, flushes, compaction, uploads).
const settleMax = 3 * time.Minute

// restQuiet is how long the page server must stay quiet to be at rest:
// its idle compaction, which images what the load wrote, comes 10-30 s
// after the last WAL (a 10 s idle period, a 20 s compaction loop), as
// scripts/bench-lazy's wait_at_rest counts.
const restQuiet = 35 * time.Second

// settle waits until the page server (whose CPU time cpu reads) has
// used less than a tenth of a CPU in each second of quiet in a row, at
// most settleMax, and returns how long it waited: the runs then measure
// GetPage, not the page server digesting pgbench's load on the same
// cores.
func settle(cpu func() time.Duration, quiet time.Duration) time.Duration {
	start := time.Now()
	calm := time.Duration(0)
	for calm < quiet && time.Since(start) < settleMax {
		c0 := cpu()
		time.Sleep(time.Second)
		if cpu()-c0 < 100*time.Millisecond {
			calm += time.Second
		} else {
			calm = 0
		}
	}
	return time.Since(start)
}

func settleNote(waited time.Duration) string {
	if waited >= settleMax {
		return "gave up waiting: still busy"
	}
	return "idle"
}

// processCPU returns a function that reads the CPU time (user and
// system) the process whose pid is in pidFile has used so far.
func processCPU(b *testing.B, pidFile string) func() time.Duration {
	raw, err := os.ReadFile(pidFile)
	if err != nil {
		b.Fatal(err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(strings.SplitN(string(raw), "\n", 2)[0]))
	if err != nil {
		b.Fatalf("%s: %v", pidFile, err)
	}
	return func() time.Duration {
		stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			b.Fatalf("page server's CPU time: %v", err)
		}
		// The fields after the command (which may hold spaces), from
		// the third: utime and stime are the 14th and 15th, in clock
		// ticks (USER_HZ, 100 on Linux).
		f := strings.Fields(string(stat[strings.LastIndexByte(string(stat), ')')+2:]))
		utime, err1 := strconv.ParseInt(f[11], 10, 64)
		stime, err2 := strconv.ParseInt(f[12], 10, 64)
		if err1 != nil || err2 != nil {
			b.Fatalf("/proc/%d/stat: utime %q, stime %q", pid, f[11], f[12])
		}
		return time.Duration(utime+stime) * (time.Second / 100)
	}
}

// getPageBatch is how many consecutive blocks one request of the
// "batch" mode asks for, pipelined, as a lazy compute's read-ahead does.
const getPageBatch = 32

// hotBlocks is how many blocks at the start of the table the "hot" mode
// requests at random: 8 MiB, which the page server's page cache holds
// once each was read, so that the mode measures what a request costs
// besides reading the page (the page stream, the scheduler, the
// lookup), not its reconstruction.
const hotBlocks = 1024

// runGetPage makes b.N single-block requests over clients concurrent
// streams and returns their latencies' summary. In the "batch" mode a
// request is getPageBatch pipelined blocks read in order: b.N counts
// pages, the latencies are the batches'.
func runGetPage(b *testing.B, client *lazyfs.PageClient, cpu func() time.Duration, redos func() float64, lsn pgdata.LSN, rel pgdata.RelFileNode, blocks uint32, mode string, clients int) getPageRow {
	lat := make([][]time.Duration, clients)
	errs := make([]error, clients)
	var wg sync.WaitGroup
	b.ResetTimer()
	cpu0, redo0 := cpu(), redos()
	start := time.Now()
	for c := range clients {
		n := b.N / clients
		if c < b.N%clients {
			n++
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(c), 7))
			// Each sequential client reads its own stretch of the table.
			next := blocks / uint32(clients) * uint32(c)
			per := 1
			if mode == "batch" {
				per = getPageBatch
			}
			req := make([]pgdata.BlockNumber, per)
			for range (n + per - 1) / per {
				for i := range req {
					req[i] = pgdata.BlockNumber(next % blocks)
					switch mode {
					case "random":
						req[i] = pgdata.BlockNumber(rng.Uint32N(blocks))
					case "hot":
						req[i] = pgdata.BlockNumber(rng.Uint32N(min(blocks, hotBlocks)))
					}
					next++
				}
				t0 := time.Now()
				if _, err := client.GetPages(context.Background(), lsn, rel, pgdata.ForkMain, req); err != nil {
					errs[c] = err
					return
				}
				lat[c] = append(lat[c], time.Since(t0))
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start)
	used, redone := cpu()-cpu0, redos()-redo0
	b.StopTimer()
	for _, err := range errs {
		if err != nil {
			b.Fatalf("GetPage: %v", err)
		}
	}
	all := slices.Concat(lat...)
	slices.Sort(all)
	pct := func(p float64) time.Duration { return all[min(len(all)-1, int(p*float64(len(all))))] }
	pages := len(all)
	if mode == "batch" {
		pages *= getPageBatch
	}
	row := getPageRow{mode: mode, clients: clients, requests: len(all), rate: float64(pages) / elapsed.Seconds(),
		p50: pct(0.50), p99: pct(0.99), p999: pct(0.999), cpuPerPage: float64(used.Microseconds()) / float64(pages), redoShare: redone / float64(pages)}
	b.ReportMetric(row.rate, "pages/s")
	b.ReportMetric(float64(row.p50.Microseconds()), "p50-µs")
	b.ReportMetric(float64(row.p99.Microseconds()), "p99-µs")
	b.ReportMetric(float64(row.p999.Microseconds()), "p99.9-µs")
	b.ReportMetric(row.cpuPerPage, "server-cpu-µs/page")
	return row
}
