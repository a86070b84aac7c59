package pageserver

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	osexec "os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/control/zenithtest"
	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/pgcluster"
	"github.com/zenithdb/zenith/repo/pgcluster/workload"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// TestPageServerEndToEnd is the page server's acceptance run, with the real
// `zenith pageserver run` process: a compute started from a basebackup of
// an imported initdb cluster has the page server as its synchronous
// standby and runs the mixed workload (CREATE DATABASE with both
// strategies included). At a quiet LSN L, after the databases step, a
// pg_dumpall is taken; the page server is killed with SIGKILL mid-workload
// and restarted (commits wait meanwhile, and continue once it is back).
// At the end:
//   - a server started on a basebackup at L dumps what the compute dumped
//     at L;
//   - a server started on a basebackup at the final LSN dumps what the
//     compute dumps at the end, and pg_amcheck --heapallindexed finds it
//     clean;
//   - the page server's repository, reopened from disk after a clean
//     stop, holds every page of every relation (masked), every SLRU page,
//     the two-phase file and the directories exactly as the stopped
//     compute's data directory has them.
func TestPageServerEndToEnd(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the page server, PostgreSQL 15 and the mixed workload")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 12*time.Minute)
	defer cancel()

	ps := startPageServerProcess(t)
	conn := ps.connect(t)
	tenant := createImportedTenant(t, conn)
	settings := workload.Settings()
	settings["synchronous_standby_names"] = ReplicationSlot
	settings["synchronous_commit"] = "on"
	compute := startFromBasebackup(t, conn, fmt.Sprintf("basebackup %s main", tenant), settings)
	callMeMaybe(ctx, t, conn, tenant, compute)
	cc := connect(t, compute, "postgres")
	defer cc.Close(ctx)

	var (
		quietLSN  pgdata.LSN
		quietDump string
		restarted = make(chan error, 1)
	)
	rep, err := workload.Run(ctx, compute.ConnString("postgres"), workload.Options{
		Seed:  11,
		Scale: 0.5,
		AfterStep: func(ctx context.Context, step workload.StepReport) error {
			switch step.Name {
			case "databases":
				// Nothing runs between steps: the page server's last
				// record is the compute's, and the dump is of that LSN.
				// (A new connection: the page server has been restarted.)
				quietLSN = waitIngested(t, ps.connect(t), tenant, cc)
				quietDump = dumpAll(t, compute)
				t.Logf("quiet point after %q: %v", step.Name, quietLSN)
			case "row_locks":
				// SIGKILL, and a restart a moment later: the next
				// step's commits wait for the page server meanwhile.
				conn.Close(ctx)
				ps.kill(t)
				go func() {
					time.Sleep(2 * time.Second)
					restarted <- ps.restart()
				}()
			}
			return nil
		},
	})
	if err != nil {
		t.Fatalf("workload: %v", err)
	}
	if err := <-restarted; err != nil {
		t.Fatalf("restart the page server: %v", err)
	}
	t.Logf("workload: %d steps", len(rep.Steps))
	if quietLSN == 0 {
		t.Fatal("the workload has no databases step: no quiet point was taken")
	}
	conn = ps.connect(t)
	leavePrepared(ctx, t, compute)
	cat := readCatalogs(ctx, t, compute)
	finalDump := dumpAll(t, compute)
	// A clean stop sends the shutdown checkpoint to the synchronous
	// standby before the compute exits.
	cc.Close(ctx)
	if err := compute.Stop(ctx, pgcluster.StopFast); err != nil {
		t.Fatal(err)
	}
	cf := readControl(t, compute.DataDir())
	final := waitLastRecord(t, conn, tenant, cf.CheckPoint)
	t.Logf("compute stopped at checkpoint %v; page server's last record ends at %v", cf.CheckPoint, final)

	for _, b := range []struct {
		what string
		lsn  pgdata.LSN
		want string
	}{
		{"quiet point", quietLSN, quietDump},
		{"final LSN", final, finalDump},
	} {
		pg := startFromBasebackup(t, conn, fmt.Sprintf("basebackup %s main %v", tenant, b.lsn), workload.Settings())
		compareDumps(t, dumpAll(t, pg), b.want)
		if b.lsn == final {
			amcheck(t, pg)
		}
		if err := pg.Stop(ctx, pgcluster.StopFast); err != nil {
			t.Fatal(err)
		}
		t.Logf("basebackup at the %s %v: pg_dumpall equal", b.what, b.lsn)
	}

	// The repository as the page server left it on disk.
	conn.Close(ctx)
	ps.stop(t)
	m := openTestRedoManager(t)
	r, err := repo.Open(repo.Config{Workdir: ps.dir, Redo: NewRedo(m), Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	tn, err := r.Tenant(tenant)
	if err != nil {
		t.Fatal(err)
	}
	tl := mainTimeline(t, ps.dir, tn)
	if got := tl.LastRecordLSN(); got != final {
		t.Fatalf("reopened repository: last record %v, want %v", got, final)
	}
	o := &oracle{t: t, ctx: ctx, m: m, tenant: tenant.String(), rd: NewDatadirReader(tl, final), dir: compute.DataDir(), cat: cat, tally: map[string]int{}}
	o.checkDatabases()
	o.checkSLRUs()
	o.checkTwoPhase()
	cp, err := o.rd.Checkpoint(ctx)
	if err != nil {
		t.Fatal(err)
	}
	o.checkCheckpoint("at the end", cp, cf)
	report(t, fmt.Sprintf("values compared at %v", final), o.tally)
}

// waitLastRecord waits until main's last record is the one that starts at
// start (the compute's shutdown checkpoint), and returns its end.
func waitLastRecord(t *testing.T, conn *pgx.Conn, tenant id.TenantID, start pgdata.LSN) pgdata.LSN {
	t.Helper()
	deadline := time.Now().Add(time.Minute)
	for {
		main := branchNamed(t, rows(t, conn, "branch_list "+tenant.String()), "main")
		last, err1 := pgdata.ParseLSN(main["last_record_lsn"])
		prev, err2 := pgdata.ParseLSN(main["prev_record_lsn"])
		if err1 != nil || err2 != nil {
			t.Fatalf("branch_list: %v %v", err1, err2)
		}
		if prev == start {
			return last
		}
		if time.Now().After(deadline) {
			t.Fatalf("main's last record starts at %v, not at %v, after a minute", prev, start)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// mainTimeline opens the timeline the tenant's branch "main" names.
func mainTimeline(t *testing.T, dir string, tn *repo.Tenant) *repo.Timeline {
	t.Helper()
	for _, info := range tn.Timelines() {
		if info.Ancestor.IsZero() {
			tl, err := tn.Timeline(info.ID)
			if err != nil {
				t.Fatal(err)
			}
			return tl
		}
	}
	t.Fatalf("tenant %s in %s has no root timeline", tn.ID(), dir)
	return nil
}

// pageServerProcess is a `zenith pageserver run` process that the test can
// kill and restart on the same directory and ports.
type pageServerProcess struct {
	bin, dir         string
	pgAddr, httpAddr string

	mu     sync.Mutex
	cmd    *osexec.Cmd
	exited chan error
	output bytes.Buffer
}

// startPageServerProcess runs the page server in a temporary directory on
// loopback ports chosen now; it is killed when the test ends.
func startPageServerProcess(t *testing.T) *pageServerProcess {
	t.Helper()
	dir, err := os.MkdirTemp("", "zenith-e2e-pageserver-")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(dir, 0o755); err != nil { // the redo processes run as postgres
		t.Fatal(err)
	}
	p := &pageServerProcess{bin: zenithtest.Binary(t), dir: dir, pgAddr: freeAddr(t), httpAddr: freeAddr(t)}
	t.Cleanup(func() {
		p.mu.Lock()
		cmd, exited := p.cmd, p.exited
		p.mu.Unlock()
		if cmd != nil {
			select {
			case err := <-exited:
				exited <- err
			default:
				cmd.Process.Kill()
				<-exited
			}
		}
		if t.Failed() {
			p.mu.Lock()
			t.Logf("page server output:\n%s", p.output.String())
			p.mu.Unlock()
		}
		os.RemoveAll(dir)
	})
	if err := p.restart(); err != nil {
		t.Fatal(err)
	}
	return p
}

func freeAddr(t *testing.T) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

// Write collects the process's output.
func (p *pageServerProcess) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.output.Write(b)
}

// restart starts the process and waits until its page service answers.
func (p *pageServerProcess) restart() error {
	cmd := osexec.Command(p.bin, "pageserver", "run", "-D", p.dir, "--listen-pg", p.pgAddr, "--listen-http", p.httpAddr)
	cmd.Stdout, cmd.Stderr = p, p
	if err := cmd.Start(); err != nil {
		return err
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	p.mu.Lock()
	p.cmd, p.exited = cmd, exited
	p.mu.Unlock()
	deadline := time.Now().Add(time.Minute)
	for {
		c, err := pgx.Connect(context.Background(), p.connString())
		if err == nil {
			c.Close(context.Background())
			return nil
		}
		select {
		case err := <-exited:
			exited <- err
			return fmt.Errorf("page server exited before it served: %v", err)
		case <-time.After(100 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("page server does not answer on %s: %v", p.pgAddr, err)
		}
	}
}

func (p *pageServerProcess) connString() string {
	host, port, _ := net.SplitHostPort(p.pgAddr)
	return fmt.Sprintf("host=%s port=%s user=zenith dbname=pageserver sslmode=disable connect_timeout=5 default_query_exec_mode=simple_protocol", host, port)
}

func (p *pageServerProcess) connect(t *testing.T) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), p.connString())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

// kill sends SIGKILL and waits for the process to be gone.
func (p *pageServerProcess) kill(t *testing.T) {
	t.Helper()
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if err := cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	err := <-exited
	exited <- err
}

// stop sends SIGTERM and expects exit status 0.
func (p *pageServerProcess) stop(t *testing.T) {
	t.Helper()
	p.mu.Lock()
	cmd, exited := p.cmd, p.exited
	p.mu.Unlock()
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		exited <- err
		if err != nil {
			t.Fatalf("page server after SIGTERM: %v, want exit status 0", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("page server did not stop within a minute of SIGTERM")
	}
}
