package pageserver

import (
	"context"
	"errors"
	"fmt"
	"os"
	osexec "os/exec"
	"os/signal"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/pageserver/walreceiver"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/pgcluster/workload"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// The environment of the page server process TestWalReceiverCrash starts:
// the test binary running TestWalReceiverProcess.
const (
	envRcvChild    = "ZENITH_TEST_WALRECEIVER_CHILD" // the repository directory
	envRcvWAL      = "ZENITH_TEST_WALRECEIVER_WAL"
	envRcvTenant   = "ZENITH_TEST_WALRECEIVER_TENANT"
	envRcvTimeline = "ZENITH_TEST_WALRECEIVER_TIMELINE"
	envRcvSource   = "ZENITH_TEST_WALRECEIVER_SOURCE" // set only the first time
	envRcvModule   = "ZENITH_TEST_WALRECEIVER_MODULE"
	envRcvRedoDir  = "ZENITH_TEST_WALRECEIVER_REDO_DIR"
	// envRcvHoldIngest, if set, is a logical message prefix: the ingest
	// of such a message waits until the process ends (holdingIngester).
	envRcvHoldIngest = "ZENITH_TEST_WALRECEIVER_HOLD_INGEST"
)

// holdingIngester is an Ingester whose ingest of a logical message with
// the prefix hold waits until the receiver stops: every record after it
// is received, stored and acknowledged, never ingested.
type holdingIngester struct {
	walreceiver.Ingester
	hold string
}

func (h holdingIngester) Ingest(ctx context.Context, rec *pgdata.Record) error {
	if prefix, ok := logicalMessagePrefix(rec); ok && prefix == h.hold {
		<-ctx.Done()
		return ctx.Err()
	}
	return h.Ingester.Ingest(ctx, rec)
}

// TestWalReceiverProcess is the page server process of
// TestWalReceiverCrash, which runs the test binary with only this test
// and its environment set; otherwise it is skipped. It streams until
// SIGTERM, then closes the repository (flushing it) and exits.
func TestWalReceiverProcess(t *testing.T) {
	workdir := os.Getenv(envRcvChild)
	if workdir == "" {
		t.Skip("the page server process of TestWalReceiverCrash")
	}
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	tenant, err := id.ParseTenantID(os.Getenv(envRcvTenant))
	if err != nil {
		t.Fatal(err)
	}
	timeline, err := id.ParseTimelineID(os.Getenv(envRcvTimeline))
	if err != nil {
		t.Fatal(err)
	}
	c := &rcvCompute{workdir: workdir, walDir: os.Getenv(envRcvWAL), tenant: tenant, timeline: timeline}
	log := zerolog.New(os.Stderr).With().Timestamp().Logger()
	m := rcvRedo(t, os.Getenv(envRcvModule), os.Getenv(envRcvRedoDir))
	n, err := openRcvNode(ctx, c, m, log)
	if err != nil {
		t.Fatal(err)
	}
	if hold := os.Getenv(envRcvHoldIngest); hold != "" {
		n.rcv = walreceiver.NewWalReceiver(n.tl, holdingIngester{Ingester: n.ing, hold: hold}, n.store, log)
	}
	if src := os.Getenv(envRcvSource); src != "" {
		if err := n.rcv.SetSource(src); err != nil {
			t.Fatal(err)
		}
	}
	err = n.rcv.Run(ctx)
	if cerr := n.close(); cerr != nil {
		t.Fatal(cerr)
	}
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("Run: %v", err)
	}
}

// rcvProcess is a running page server process.
type rcvProcess struct {
	cmd    *osexec.Cmd
	log    string
	exited chan struct{} // closed once it has exited; err is then set
	err    error
}

// startRcvProcess starts the page server process of start n, with env
// (KEY=VALUE) added to its environment.
func startRcvProcess(t *testing.T, c *rcvCompute, module, redoRoot, source string, n int, env ...string) *rcvProcess {
	t.Helper()
	p := &rcvProcess{log: filepath.Join(c.workdir, fmt.Sprintf("pageserver-%d.log", n)), exited: make(chan struct{})}
	f, err := os.Create(p.log)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p.cmd = osexec.Command(os.Args[0], "-test.run=^TestWalReceiverProcess$", "-test.v", "-test.timeout=0")
	p.cmd.Env = append(os.Environ(),
		envRcvChild+"="+c.workdir, envRcvWAL+"="+c.walDir, envRcvTenant+"="+c.tenant.String(),
		envRcvTimeline+"="+c.timeline.String(), envRcvSource+"="+source, envRcvModule+"="+module,
		envRcvRedoDir+"="+filepath.Join(redoRoot, fmt.Sprintf("walredo-%d", n)))
	p.cmd.Env = append(p.cmd.Env, env...)
	p.cmd.Stdout, p.cmd.Stderr = f, f
	// Its own process group, so that kill -9 also ends its redo processes.
	p.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.exited)
	}()
	t.Cleanup(p.kill)
	return p
}

// kill sends SIGKILL to the process's group and waits for the process.
func (p *rcvProcess) kill() {
	select {
	case <-p.exited:
		return
	default:
	}
	if pid := p.cmd.Process.Pid; pid > 1 {
		syscall.Kill(-pid, syscall.SIGKILL)
	}
	<-p.exited
}

// stop sends SIGTERM and waits for a clean exit.
func (p *rcvProcess) stop(t *testing.T) {
	t.Helper()
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case <-p.exited:
		if p.err != nil {
			t.Fatalf("page server process: %v\n%s", p.err, p.tail())
		}
	case <-time.After(2 * time.Minute):
		t.Fatalf("page server process did not stop\n%s", p.tail())
	}
}

func (p *rcvProcess) tail() string {
	b, _ := os.ReadFile(p.log)
	lines := strings.Split(strings.TrimRight(string(b), "\n"), "\n")
	return strings.Join(lines[max(0, len(lines)-30):], "\n")
}

// TestWalReceiverCrash runs the receiver and repository in a child
// process attached to a compute as its synchronous standby, kills it with
// SIGKILL twice during the mixed workload and a stream of single-row
// commits, and restarts it (with no source given: it is persisted). Then
// every row whose commit the compute acknowledged is in the table's pages
// read through the repository.
func TestWalReceiverCrash(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c := newRcvCompute(t)
	module := rcvRedoModule(t)
	redoRoot := rcvTempDir(t)
	var mu sync.Mutex // guards proc and starts
	starts := 1
	if err := c.pg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	proc := startRcvProcess(t, c, module, redoRoot, c.pg.ConnString("postgres"), starts)
	conn, err := pgx.Connect(ctx, c.pg.ConnString("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	exec(t, conn, "CREATE TABLE rcv_acked (id int4, pad text)")

	// One commit after another, each acknowledged only once the page
	// server has flushed it.
	var acked []int32
	insertCtx, stopInserts := context.WithCancel(ctx)
	inserted := make(chan error, 1)
	go func() {
		ic, err := pgx.Connect(ctx, c.pg.ConnString("postgres"))
		if err != nil {
			inserted <- err
			return
		}
		defer ic.Close(context.Background())
		for i := int32(1); insertCtx.Err() == nil; i++ {
			if _, err := ic.Exec(ctx, "INSERT INTO rcv_acked VALUES ($1, repeat('p', 200))", i); err != nil {
				inserted <- err
				return
			}
			acked = append(acked, i)
		}
		inserted <- nil
	}()

	// Kill -9 a little after the second and fifth steps begin, while
	// they and the inserts write, and start a new process.
	var kills sync.WaitGroup
	crash := func() {
		defer kills.Done()
		time.Sleep(300 * time.Millisecond)
		mu.Lock()
		defer mu.Unlock()
		proc.kill()
		starts++
		t.Logf("killed the page server with SIGKILL; starting it again (%d)", starts)
		proc = startRcvProcess(t, c, module, redoRoot, "", starts)
	}
	step := 0
	rep, err := workload.Run(ctx, c.pg.ConnString("postgres"), workload.Options{
		Seed:  7,
		Scale: 0.2,
		AfterStep: func(context.Context, workload.StepReport) error {
			step++
			if step == 1 || step == 4 {
				kills.Add(1)
				go crash()
			}
			return nil
		},
	})
	kills.Wait()
	if err != nil {
		t.Fatalf("workload: %v", err)
	}
	stopInserts()
	if err := <-inserted; err != nil {
		t.Fatalf("inserts: %v", err)
	}
	t.Logf("workload: %d steps; %d single-row commits acknowledged", len(rep.Steps), len(acked))

	// Wait for the page server to report everything applied, then stop it
	// cleanly so the repository is flushed for us to read.
	end := queryLSN(ctx, t, conn, "SELECT pg_current_wal_lsn()")
	waitApplied(ctx, t, conn, end, proc)
	var caughtUp int
	for i := 2; i <= starts; i++ {
		b, _ := os.ReadFile(filepath.Join(c.workdir, fmt.Sprintf("pageserver-%d.log", i)))
		if strings.Contains(string(b), "ingested stored WAL") {
			caughtUp++
		}
	}
	t.Logf("%d of %d restarts ingested stored WAL first", caughtUp, starts-1)
	mu.Lock()
	proc.stop(t)
	mu.Unlock()

	checkAckedRows(ctx, t, c, conn, module, redoRoot, "rcv_acked", acked, end)
}

// TestWalReceiverAcksWhileIngestWaits shows that the page server, as a
// compute's synchronous standby, acknowledges commits once their WAL is
// fsynced, without waiting for their ingest, and that they are durable
// all the same: its ingest is held at a logical message for good
// (holdingIngester), the compute commits rows one by one after it, each
// acknowledged while the page server reports nothing after the message
// applied; then the page server is killed with SIGKILL and started again
// without the hold, and every acknowledged row is in the table's pages
// read through the repository. (Before the ingest had a goroutine of its
// own, the first commit after the message waited for ever.)
func TestWalReceiverAcksWhileIngestWaits(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	defer cancel()
	c := newRcvCompute(t)
	module := rcvRedoModule(t)
	redoRoot := rcvTempDir(t)
	if err := c.pg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	const hold = "zenith-test-hold-ingest"
	proc := startRcvProcess(t, c, module, redoRoot, c.pg.ConnString("postgres"), 1, envRcvHoldIngest+"="+hold)
	conn, err := pgx.Connect(ctx, c.pg.ConnString("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	exec(t, conn, "CREATE TABLE rcv_held (id int4, pad text)")
	held := queryLSN(ctx, t, conn, "SELECT pg_logical_emit_message(false, '"+hold+"', '')::text")

	var acked []int32
	for i := int32(1); i <= 300; i++ {
		// A commit that waits for the ingest never returns: give up
		// long before the test's deadline.
		ictx, done := context.WithTimeout(ctx, time.Minute)
		_, err := conn.Exec(ictx, "INSERT INTO rcv_held VALUES ($1, repeat('p', 200))", i)
		done()
		if err != nil {
			t.Fatalf("commit %d, with the page server's ingest held at %v: %v\n%s", i, held, err, proc.tail())
		}
		acked = append(acked, i)
	}
	end := queryLSN(ctx, t, conn, "SELECT pg_current_wal_lsn()")
	var flush, replay pgdata.LSN
	var fs, rs string
	if err := conn.QueryRow(ctx, "SELECT flush_lsn::text, replay_lsn::text FROM pg_stat_replication").Scan(&fs, &rs); err != nil {
		t.Fatal(err)
	}
	if flush, err = pgdata.ParseLSN(fs); err == nil {
		replay, err = pgdata.ParseLSN(rs)
	}
	if err != nil {
		t.Fatal(err)
	}
	if replay >= held {
		t.Fatalf("the page server applied up to %v, past the held message at %v", replay, held)
	}
	t.Logf("%d commits acknowledged: the page server flushed up to %v, applied up to %v (held at %v)", len(acked), flush, replay, held)

	proc.kill()
	t.Log("killed the page server with SIGKILL; starting it again without the hold")
	proc = startRcvProcess(t, c, module, redoRoot, "", 2)
	waitApplied(ctx, t, conn, end, proc)
	proc.stop(t)
	checkAckedRows(ctx, t, c, conn, module, redoRoot, "rcv_held", acked, end)
}

// waitApplied waits until the page server the compute streams to reports
// everything up to end applied.
func waitApplied(ctx context.Context, t *testing.T, conn *pgx.Conn, end pgdata.LSN, proc *rcvProcess) {
	t.Helper()
	var replay pgdata.LSN
	for deadline := time.Now().Add(3 * time.Minute); replay < end; {
		var s *string
		if err := conn.QueryRow(ctx, "SELECT max(replay_lsn)::text FROM pg_stat_replication").Scan(&s); err != nil {
			t.Fatal(err)
		}
		if s != nil {
			var err error
			if replay, err = pgdata.ParseLSN(*s); err != nil {
				t.Fatal(err)
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("the page server applied up to %v, not the compute's %v\n%s", replay, end, proc.tail())
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// checkAckedRows opens the repository of c, whose page server process is
// stopped, and checks that every row of acked (the int4 first column of
// table) is in the table's pages at end, once, and that the pages hold as
// many rows as the compute's table.
func checkAckedRows(ctx context.Context, t *testing.T, c *rcvCompute, conn *pgx.Conn, module, redoRoot, table string, acked []int32, end pgdata.LSN) {
	t.Helper()
	var rows int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM "+table).Scan(&rows); err != nil {
		t.Fatal(err)
	}
	rel := relationOf(ctx, t, conn, table)

	n, err := openRcvNode(ctx, c, rcvRedo(t, module, filepath.Join(redoRoot, "walredo-check")), zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	defer n.close()
	if last := n.tl.LastRecordLSN(); last < end {
		t.Fatalf("the timeline ends at %v, before the compute's %v", last, end)
	}
	nblocks, err := n.tl.RelSize(ctx, rel, pgdata.ForkMain, end)
	if err != nil {
		t.Fatal(err)
	}
	found := make(map[int32]int)
	for blk := uint32(0); blk < nblocks; blk++ {
		page, err := n.tl.Get(ctx, key.RelBlock(rel, pgdata.ForkMain, blk), end)
		if err != nil {
			t.Fatalf("block %d: %v", blk, err)
		}
		ids, err := heapInts(page)
		if err != nil {
			t.Fatalf("block %d: %v", blk, err)
		}
		for _, v := range ids {
			found[v]++
		}
	}
	missing := 0
	for _, v := range acked {
		if found[v] != 1 {
			if missing < 10 {
				t.Errorf("acknowledged row %d is in the pages %d times, want once", v, found[v])
			}
			missing++
		}
	}
	if len(found) != rows || missing > 0 {
		t.Fatalf("%d distinct rows in %d pages through the repository, the compute has %d; %d of %d acknowledged rows wrong",
			len(found), nblocks, rows, missing, len(acked))
	}
	t.Logf("all %d acknowledged rows are in the %d pages read through the repository at %v", len(acked), nblocks, end)
}
