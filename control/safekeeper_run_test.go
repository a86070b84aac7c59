package control

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/control/zenithtest"
	"github.com/zenithdb/zenith/repo/auth"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/pgcluster/pgtest"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/safekeeper"
)

// skProcess is one `zenith safekeeper run` process of a test.
type skProcess struct {
	args     []string
	pgAddr   string
	httpAddr string
	cmd      *exec.Cmd
	out      *syncBuffer
	exited   chan error
}

func (p *skProcess) start(t *testing.T, bin string) {
	t.Helper()
	p.out = &syncBuffer{}
	p.cmd = exec.Command(bin, p.args...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p.exited = make(chan error, 1)
	go func() { p.exited <- p.cmd.Wait() }()
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get("http://" + p.httpAddr + "/v1/status")
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("safekeeper did not answer on %s: %v\n%s", p.httpAddr, err, p.out)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// signal sends sig to the process (by its pid, which is ours) and waits
// for it to exit.
func (p *skProcess) signal(t *testing.T, sig syscall.Signal) error {
	t.Helper()
	if p.cmd == nil {
		return nil
	}
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-p.exited:
		p.cmd = nil
		return err
	case <-time.After(30 * time.Second):
		t.Fatalf("safekeeper did not exit after %v", sig)
		return nil
	}
}

func (p *skProcess) status(t *testing.T) []safekeeper.TimelineState {
	t.Helper()
	resp, err := http.Get("http://" + p.httpAddr + "/v1/status")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var st []safekeeper.TimelineState
	if err := json.NewDecoder(resp.Body).Decode(&st); err != nil {
		t.Fatal(err)
	}
	return st
}

func (p *skProcess) flush(t *testing.T) pgdata.LSN {
	t.Helper()
	st := p.status(t)
	if len(st) != 1 {
		t.Fatalf("safekeeper status: %d timelines, want 1", len(st))
	}
	return st[0].FlushLSN
}

// TestSafekeeperRun runs three `zenith safekeeper run` processes, elects,
// streams a compute's commits to them, kill -9s one and restarts it (it
// catches up, commits never stop), then stops them with SIGTERM (exit 0).
func TestSafekeeperRun(t *testing.T) {
	bin := zenithtest.Binary(t)
	base := t.TempDir()
	ps := make([]*skProcess, 3)
	for i := range ps {
		ps[i] = &skProcess{pgAddr: zenithtest.FreeAddr(t), httpAddr: zenithtest.FreeAddr(t)}
	}
	var addrs []string
	for i, p := range ps {
		var peers []string
		for j, q := range ps {
			if j != i {
				peers = append(peers, q.httpAddr)
			}
		}
		p.args = []string{"safekeeper", "run", "-D", filepath.Join(base, fmt.Sprint("sk", i+1)), "--id", fmt.Sprint(i + 1),
			"--listen-pg", p.pgAddr, "--listen-http", p.httpAddr, "--peers", strings.Join(peers, ",")}
		addrs = append(addrs, p.pgAddr)
		p.start(t, bin)
	}
	t.Cleanup(func() {
		for _, p := range ps {
			if p.cmd != nil {
				p.signal(t, syscall.SIGKILL)
			}
		}
	})

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	pg := pgtest.Start(t, map[string]string{
		"synchronous_standby_names": "ANY 2 (safekeeper1, safekeeper2, safekeeper3)",
		"synchronous_commit":        "on",
		"wal_level":                 "replica",
	})
	tenant, timeline := id.NewTenantID(), id.NewTimelineID()
	e, err := safekeeper.Elect(ctx, addrs, tenant, timeline, auth.ClientOptions{}, zerolog.Nop())
	if err != nil {
		t.Fatal(err)
	}
	conn, err := pgx.Connect(ctx, pg.ConnString("postgres"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(context.Background())
	var s string
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&s); err != nil {
		t.Fatal(err)
	}
	start, _ := pgdata.ParseLSN(s)
	if err := e.SetCompute(ctx, pg.ConnString("postgres"), start); err != nil {
		t.Fatal(err)
	}
	exec1 := func(sql string) {
		t.Helper()
		qctx, qcancel := context.WithTimeout(ctx, 30*time.Second)
		defer qcancel()
		if _, err := conn.Exec(qctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	exec1("CREATE TABLE t (n int)")
	if err := ps[0].signal(t, syscall.SIGKILL); err == nil {
		t.Fatal("kill -9 of a safekeeper: exit status 0")
	}
	for i := 0; i < 50; i++ {
		exec1(fmt.Sprintf("INSERT INTO t VALUES (%d)", i))
	}
	ps[0].start(t, bin)
	exec1("INSERT INTO t VALUES (50)")
	var lsnText string
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_flush_lsn()::text").Scan(&lsnText); err != nil {
		t.Fatal(err)
	}
	end, _ := pgdata.ParseLSN(lsnText)
	deadline := time.Now().Add(30 * time.Second)
	for ps[0].flush(t) < end {
		if time.Now().After(deadline) {
			t.Fatalf("the restarted safekeeper did not catch up: flush %s, compute %s\n%s", ps[0].flush(t), end, ps[0].out)
		}
		time.Sleep(100 * time.Millisecond)
	}
	resp, err := http.Get("http://" + ps[0].httpAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(metrics), "safekeeper_flush_lsn{tenant_id=\""+tenant.String()) {
		t.Fatalf("/metrics has no safekeeper_flush_lsn for the timeline:\n%s", metrics)
	}
	for i, p := range ps {
		if err := p.signal(t, syscall.SIGTERM); err != nil {
			t.Fatalf("safekeeper %d after SIGTERM: %v\n%s", i+1, err, p.out)
		}
	}
	if _, err := os.Stat(filepath.Join(base, "sk1", tenant.String(), timeline.String(), safekeeper.ControlFileName)); err != nil {
		t.Fatalf("control file: %v", err)
	}
}
