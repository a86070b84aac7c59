package control_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// linkProxy forwards TCP connections from a loopback port to a target
// and can cut every connection it carries, as a network fault would.
type linkProxy struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	conns map[net.Conn]struct{}
}

func newLinkProxy(t *testing.T, target string) *linkProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &linkProxy{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	go p.serve()
	t.Cleanup(p.close)
	return p
}

func (p *linkProxy) addr() string { return p.ln.Addr().String() }

func (p *linkProxy) serve() {
	for {
		in, err := p.ln.Accept()
		if err != nil {
			return
		}
		out, err := net.DialTimeout("tcp", p.target, 5*time.Second)
		if err != nil {
			in.Close()
			continue
		}
		if !p.track(in, out) {
			return
		}
		go p.pipe(in, out)
		go p.pipe(out, in)
	}
}

// track records a pair of connections; false if the proxy is closed.
func (p *linkProxy) track(cs ...net.Conn) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.conns == nil {
		for _, c := range cs {
			c.Close()
		}
		return false
	}
	for _, c := range cs {
		p.conns[c] = struct{}{}
	}
	return true
}

// pipe copies one direction; when it ends, both ends close.
func (p *linkProxy) pipe(dst, src net.Conn) {
	_, _ = io.Copy(dst, src)
	p.mu.Lock()
	delete(p.conns, dst)
	delete(p.conns, src)
	p.mu.Unlock()
	dst.Close()
	src.Close()
}

// cut closes every connection the proxy carries and says how many links
// (pairs) there were; new connections are still accepted.
func (p *linkProxy) cut() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.conns) / 2
	for c := range p.conns {
		c.Close()
		delete(p.conns, c)
	}
	return n
}

func (p *linkProxy) close() {
	p.ln.Close()
	p.cut()
	p.mu.Lock()
	p.conns = nil
	p.mu.Unlock()
}

// faultSeed is ZENITH_FAULT_SEED, or a time-based seed.
func faultSeed(t *testing.T) uint64 {
	t.Helper()
	s := os.Getenv("ZENITH_FAULT_SEED")
	if s == "" {
		return uint64(time.Now().UnixNano())
	}
	seed, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		t.Fatalf("ZENITH_FAULT_SEED=%q: want a non-negative integer", s)
	}
	return seed
}

// ackedWriter commits numbered rows, one transaction each, and records
// the numbers whose commit was acknowledged.
type ackedWriter struct {
	connStr string
	stop    chan struct{}
	done    chan struct{}

	mu     sync.Mutex
	acked  []int
	errors int
	last   error
}

// count is how many commits were acknowledged so far.
func (w *ackedWriter) count() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.acked)
}

func startAckedWriter(connStr string) *ackedWriter {
	w := &ackedWriter{connStr: connStr, stop: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	return w
}

func (w *ackedWriter) run() {
	defer close(w.done)
	var conn *pgx.Conn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	for i := 1; ; i++ {
		select {
		case <-w.stop:
			return
		default:
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		var err error
		if conn == nil {
			conn, err = pgx.Connect(ctx, w.connStr)
		}
		if err == nil {
			_, err = conn.Exec(ctx, "INSERT INTO acked VALUES ($1)", i)
		}
		cancel()
		if err == nil {
			w.mu.Lock()
			w.acked = append(w.acked, i)
			w.mu.Unlock()
			continue
		}
		w.errors++
		w.last = err
		if conn != nil {
			conn.Close(context.Background())
			conn = nil
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// finish stops the writer after its current commit and returns what was
// acknowledged.
func (w *ackedWriter) finish(t *testing.T) []int {
	t.Helper()
	close(w.stop)
	select {
	case <-w.done:
	case <-time.After(3 * time.Minute):
		t.Fatal("the writer's last commit did not complete within 3 minutes of every process being back")
	}
	return w.acked
}

// TestFaultsRandomized runs three safekeepers, a page server and a compute
// under a stream of numbered commits while a seeded random schedule kills
// and restarts safekeepers (keeping a majority most of the time, losing it
// briefly sometimes) and the page server, and cuts links between the page
// server and safekeepers (a proxy in between) and between the compute and
// safekeepers (their walsenders terminated). At the end everything is
// restarted and a compute re-created from scratch: every acknowledged row
// is there. ZENITH_FAULT_SEED replays a schedule (the timing still
// varies); ZENITH_FAULT_SECONDS (default 45) sets how long faults go on.
func TestFaultsRandomized(t *testing.T) {
	seed := faultSeed(t)
	t.Logf("ZENITH_FAULT_SEED=%d (replay: ZENITH_FAULT_SEED=%d go test ./control -run '^TestFaultsRandomized$' -v)", seed, seed)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("failed with ZENITH_FAULT_SEED=%d", seed)
		}
	})
	seconds := envSeconds(t, "ZENITH_FAULT_SECONDS", 45)
	rng := rand.New(rand.NewPCG(seed, seed>>32|1))

	const count = 3
	env := newSKEnv(t, count)
	pg := env.Postgres.CreateStart("main")
	admin := pg.Connect()
	exec1(t, admin, "CREATE TABLE acked (id int PRIMARY KEY)")

	// The page server streams from the safekeepers through proxies.
	proxies := make([]*linkProxy, count)
	var proxyAddrs []string
	for i := range proxies {
		proxies[i] = newLinkProxy(t, env.skPG(i+1))
		proxyAddrs = append(proxyAddrs, proxies[i].addr())
	}
	env.setPageserverSafekeepers(t, proxyAddrs)

	w := startAckedWriter(pg.ConnString + "?sslmode=disable")
	start := time.Now()
	logf := func(format string, args ...any) {
		t.Logf("%6.1fs  %s", time.Since(start).Seconds(), fmt.Sprintf(format, args...))
	}
	// down[n] > 0: safekeeper n is down for that many more ticks; index 0
	// is the page server.
	down := make([]int, count+1)
	restart := func(n int) {
		if n == 0 {
			env.Zenith("pageserver", "start")
			logf("page server restarted")
		} else {
			env.Zenith("safekeeper", "start", "--id", strconv.Itoa(n))
			logf("safekeeper %d restarted", n)
		}
		down[n] = 0
	}
	upSafekeepers := func() []int {
		var up []int
		for n := 1; n <= count; n++ {
			if down[n] == 0 {
				up = append(up, n)
			}
		}
		return up
	}
	for time.Since(start) < time.Duration(seconds)*time.Second {
		time.Sleep(time.Duration(200+rng.IntN(1300)) * time.Millisecond)
		for n := range down {
			switch {
			case down[n] == 1:
				restart(n)
			case down[n] > 1:
				down[n]--
			}
		}
		switch r := rng.IntN(100); {
		case r < 35:
			up := upSafekeepers()
			if len(up) == 0 {
				break
			}
			n := up[rng.IntN(len(up))]
			losesMajority := len(up)-1 < count/2+1
			if losesMajority && rng.IntN(4) != 0 {
				break // keep the majority most of the time
			}
			killed, err := env.killSafekeeper(n)
			mustKill(t, fmt.Sprintf("safekeeper %d", n), killed, err)
			down[n] = 1 + rng.IntN(4)
			if losesMajority {
				down[n] = 1 + rng.IntN(2)
			}
			logf("kill -9 safekeeper %d (majority lost: %v), back in %d ticks", n, losesMajority, down[n])
		case r < 50:
			if down[0] > 0 {
				break
			}
			killed, err := env.killPageserver()
			mustKill(t, "the page server", killed, err)
			down[0] = 1 + rng.IntN(3)
			logf("kill -9 page server, back in %d ticks", down[0])
		case r < 75:
			n := 1 + rng.IntN(count)
			logf("cut %d links page server -> safekeeper %d", proxies[n-1].cut(), n)
		default:
			n := 1 + rng.IntN(count)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			var cut int
			err := admin.QueryRow(ctx, "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_replication WHERE application_name = $1", fmt.Sprintf("safekeeper%d", n)).Scan(&cut)
			cancel()
			var pgErr *pgconn.PgError
			if err != nil && down[0] > 0 && errors.As(err, &pgErr) && pgErr.Code == "58030" {
				// A lazy compute reads the catalog blocks it has not
				// fetched yet from the page server, which is down.
				logf("no links cut compute -> safekeeper %d: %s (the page server is down)", n, pgErr.Message)
				break
			}
			if err != nil {
				t.Fatalf("terminate safekeeper %d's walsender: %v", n, err)
			}
			logf("cut %d links compute -> safekeeper %d", cut, n)
		}
	}
	for n := range down {
		if down[n] > 0 {
			restart(n)
		}
	}
	acked := w.finish(t)
	logf("faults over: %d commits acknowledged, %d failed (last error: %v)", len(acked), w.errors, w.last)
	if len(acked) < 100 {
		t.Fatalf("only %d commits acknowledged in %d s: the check below would prove little", len(acked), seconds)
	}

	admin.Close(context.Background())
	env.Zenith("pg", "stop", "main", "--destroy", "--immediate")
	pg = env.Postgres.CreateStart("main")
	conn := pg.Connect()
	n, missing := missingAcked(t, conn, acked)
	logf("re-created compute: %d rows (%d acknowledged, %d committed without acknowledgement)", n, len(acked), n-(len(acked)-len(missing)))
	if len(missing) > 0 {
		t.Errorf("%d acknowledged commits lost, e.g. %v", len(missing), missing[:min(len(missing), 20)])
	}
	exec1(t, conn, "INSERT INTO acked VALUES (-1)")
}

// setPageserverSafekeepers points the page server's WAL receiver for
// main at addrs (PUT .../safekeepers of its HTTP API).
func (e *skEnv) setPageserverSafekeepers(t *testing.T, addrs []string) {
	t.Helper()
	body, _ := json.Marshal(map[string][]string{"safekeepers": addrs})
	url := fmt.Sprintf("http://%s/v1/tenant/%s/timeline/main/safekeepers", e.cfg.Pageserver.ListenHTTP, e.cfg.DefaultTenant)
	req, err := http.NewRequest(http.MethodPut, url, bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("PUT %s: %s: %s", url, resp.Status, b)
	}
}
