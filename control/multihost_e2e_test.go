package control_test

import (
	"context"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/zenithdb/zenith/control/zenithtest"
)

// hostAddr returns a free TCP address on host (a loopback address standing
// for another machine), or skips the test when host cannot be bound here.
func hostAddr(t *testing.T, host string) string {
	t.Helper()
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		t.Skipf("cannot listen on %s here (%v): the multi-address test needs 127.0.0.0/8 on loopback", host, err)
	}
	defer l.Close()
	return l.Addr().String()
}

// TestMultihostAddresses runs the three-host layout of the README on one
// machine, each "host" its own loopback address, so that nothing that
// still assumed 127.0.0.1 could work: the page server on 127.0.0.2 and
// safekeeper 1 on 127.0.0.3 run from the repository (host a); safekeepers
// 2 and 3 on 127.0.0.4 and .5 run from the systemd units zenith init
// wrote for them, as their hosts would, and zenith start/stop leave them
// alone; the compute listens on 127.0.0.6 only, where the safekeepers must
// connect to it. A commit, the compute destroyed without a clean stop and
// re-created: the row is back.
func TestMultihostAddresses(t *testing.T) {
	if testing.Short() {
		t.Skip("starts the real binary, three safekeepers and PostgreSQL")
	}
	ps, psHTTP := hostAddr(t, "127.0.0.2"), hostAddr(t, "127.0.0.2")
	var sks, skHTTP []string
	for _, h := range []string{"127.0.0.3", "127.0.0.4", "127.0.0.5"} {
		sks, skHTTP = append(sks, hostAddr(t, h)), append(skHTTP, hostAddr(t, h))
	}
	const computeHost = "127.0.0.6"
	hostAddr(t, computeHost)
	unitDir := filepath.Join(t.TempDir(), "units")

	env := zenithtest.New(t, &zenithtest.Options{NoStart: true, InitArgs: []string{
		"--pageserver-addr", ps, "--pageserver-http-addr", psHTTP,
		"--safekeeper-addrs", strings.Join(sks, ","), "--safekeeper-http-addrs", strings.Join(skHTTP, ","),
		"--local", "pageserver,safekeeper-1",
		"--compute-host", computeHost, "--compute-listen", computeHost,
		"--compute-replication-from", "127.0.0.0/8",
		"--systemd", unitDir,
	}})
	cfg, err := os.ReadFile(filepath.Join(env.RepoDir, "config.toml"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"listen_pg = '" + sks[1] + "'", "advertise_host = '" + computeHost + "'", "listen_pg = '" + ps + "'"} {
		if !strings.Contains(string(cfg), want) {
			t.Errorf("config.toml has no %s:\n%s", want, cfg)
		}
	}

	// systemd on host a can order the page server after safekeeper 1
	// only: the others are units of other hosts.
	psUnit, err := os.ReadFile(filepath.Join(unitDir, "zenith-pageserver.service"))
	if err != nil {
		t.Fatal(err)
	}
	var after string
	for _, l := range strings.Split(string(psUnit), "\n") {
		if strings.HasPrefix(l, "After=") {
			after = l
		}
	}
	if !strings.Contains(after, "zenith-safekeeper-1.service") || strings.Contains(after, "zenith-safekeeper-2") {
		t.Errorf("page server unit: %q, want it after safekeeper 1 only", after)
	}

	// Hosts b and c: their safekeepers, run as their units say.
	for n := 2; n <= 3; n++ {
		startUnit(t, env, filepath.Join(unitDir, fmt.Sprintf("zenith-safekeeper-%d.service", n)), sks[n-1])
	}

	_, started, err := env.Run("start")
	if err != nil {
		t.Fatalf("zenith start: %v\n%s", err, started)
	}
	for n := 2; n <= 3; n++ {
		want := fmt.Sprintf("safekeeper %d at %s runs on another host: not started here (answers)", n, sks[n-1])
		if !strings.Contains(started, want) {
			t.Errorf("zenith start does not say %q:\n%s", want, started)
		}
	}
	status := env.Zenith("status")
	t.Logf("zenith start:\n%szenith status:\n%s", started, status)
	for _, want := range []string{
		"page server: running, pid", "safekeeper 1: running, pid",
		fmt.Sprintf("safekeeper 3: on another host, %s, answers", sks[2]),
	} {
		if !strings.Contains(status, want) {
			t.Errorf("zenith status has no %q:\n%s", want, status)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	connStr := strings.TrimSpace(env.Zenith("pg", "start", "main"))
	if !strings.Contains(connStr, "@"+computeHost+":") {
		t.Fatalf("zenith pg start printed %q, want a connection string to %s", connStr, computeHost)
	}
	port := connStr[strings.LastIndex(connStr, ":")+1 : strings.LastIndex(connStr, "/")]
	if c, err := net.DialTimeout("tcp", net.JoinHostPort("127.0.0.1", port), time.Second); err == nil {
		c.Close()
		t.Fatalf("the compute also listens on 127.0.0.1:%s: compute.listen_addresses is not applied", port)
	}
	conn, err := pgx.Connect(ctx, connStr)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := conn.Exec(ctx, "CREATE TABLE t (v text); INSERT INTO t VALUES ('across hosts')"); err != nil {
		t.Fatal(err)
	}
	// Every safekeeper streams from the compute at 127.0.0.6: a commit
	// waits for a majority of them.
	var streaming int
	if err := conn.QueryRow(ctx, "SELECT count(*) FROM pg_stat_replication WHERE application_name LIKE 'safekeeper%' AND state = 'streaming'").Scan(&streaming); err != nil {
		t.Fatal(err)
	}
	if streaming < 2 {
		t.Errorf("%d safekeepers stream from the compute, want a majority of 3", streaming)
	}
	conn.Close(ctx)

	env.Zenith("pg", "stop", "main", "--destroy", "--immediate")
	connStr = strings.TrimSpace(env.Zenith("pg", "start", "main"))
	conn, err = pgx.Connect(ctx, connStr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	var v string
	if err := conn.QueryRow(ctx, "SELECT v FROM t").Scan(&v); err != nil || v != "across hosts" {
		t.Fatalf("after the compute was destroyed and re-created: got %q, %v; want the committed row", v, err)
	}

	_, stopped, err := env.Run("stop")
	if err != nil {
		t.Fatalf("zenith stop: %v\n%s", err, stopped)
	}
	if want := fmt.Sprintf("safekeeper 2 at %s runs on another host: not stopped here", sks[1]); !strings.Contains(stopped, want) {
		t.Errorf("zenith stop does not say %q:\n%s", want, stopped)
	}
}

// startUnit runs the ExecStart command of a unit file zenith init wrote,
// as systemd would on the unit's host, until the test ends, and waits
// until addr answers.
func startUnit(t *testing.T, env *zenithtest.Env, unit, addr string) {
	t.Helper()
	b, err := os.ReadFile(unit)
	if err != nil {
		t.Fatal(err)
	}
	var argv []string
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, "ExecStart="); ok {
			for _, f := range strings.Fields(rest) {
				if strings.HasPrefix(f, `"`) {
					if f, err = strconv.Unquote(f); err != nil {
						t.Fatalf("%s: ExecStart: %v", unit, err)
					}
				}
				argv = append(argv, strings.ReplaceAll(f, "%%", "%"))
			}
		}
	}
	if len(argv) == 0 {
		t.Fatalf("%s has no ExecStart:\n%s", unit, b)
	}
	log, err := os.Create(filepath.Join(env.RepoDir, "unit-"+strings.TrimSuffix(filepath.Base(unit), ".service")+".log"))
	if err != nil {
		t.Fatal(err)
	}
	defer log.Close()
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("%s: %v", unit, err)
	}
	exited := make(chan struct{})
	go func() { cmd.Wait(); close(exited) }()
	t.Cleanup(func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-exited:
		case <-time.After(30 * time.Second):
			_ = cmd.Process.Kill()
			<-exited
		}
	})
	deadline := time.Now().Add(30 * time.Second)
	for {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return
		}
		select {
		case <-exited:
			t.Fatalf("%s: %s exited before answering on %s", unit, strings.Join(argv, " "), addr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: nothing answers on %s after 30 s: %v", unit, addr, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}
