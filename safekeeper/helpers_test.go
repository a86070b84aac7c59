package safekeeper

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/netport"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// testSet is a set of safekeepers running in this process, each on its
// own loopback ports (kept across restarts) and data directory.
type testSet struct {
	t        testing.TB
	tenant   id.TenantID
	timeline id.TimelineID
	nodes    []*testNode
	// configure, if set, changes each node's config before it opens.
	configure func(*Config)
}

type testNode struct {
	id       uint64
	dir      string
	pgAddr   string
	httpAddr string
	peers    []string

	sk     *Safekeeper
	cancel context.CancelFunc
	done   chan error
}

func newTestSet(t testing.TB, n int) *testSet {
	t.Helper()
	ts := &testSet{t: t, tenant: id.NewTenantID(), timeline: id.NewTimelineID()}
	base := t.TempDir()
	for i := 0; i < n; i++ {
		ts.nodes = append(ts.nodes, &testNode{id: uint64(i + 1), dir: filepath.Join(base, fmt.Sprintf("sk%d", i+1)),
			pgAddr: freeAddr(t), httpAddr: freeAddr(t)})
	}
	for _, nd := range ts.nodes {
		for _, p := range ts.nodes {
			if p != nd {
				nd.peers = append(nd.peers, p.httpAddr)
			}
		}
	}
	t.Cleanup(func() {
		for i, nd := range ts.nodes {
			if nd.sk != nil {
				ts.stop(i)
			}
		}
	})
	return ts
}

// freeAddr returns a loopback address with a port free right now, below
// the ephemeral range (netport.Pick).
func freeAddr(t testing.TB) string {
	t.Helper()
	p, err := netport.Pick("127.0.0.1", 1)
	if err != nil {
		t.Fatal(err)
	}
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(p))
}

func (ts *testSet) addrs() []string {
	var out []string
	for _, nd := range ts.nodes {
		out = append(out, nd.pgAddr)
	}
	return out
}

// open opens node i's safekeeper without running it.
func (ts *testSet) open(i int) *Safekeeper {
	ts.t.Helper()
	nd := ts.nodes[i]
	cfg := Config{ID: nd.id, Dir: nd.dir, Peers: nd.peers, PollInterval: 50 * time.Millisecond}
	if ts.configure != nil {
		ts.configure(&cfg)
	}
	sk, err := Open(cfg,
		zerolog.New(zerolog.NewTestWriter(ts.t)).Level(zerolog.InfoLevel))
	if err != nil {
		ts.t.Fatalf("open safekeeper %d: %v", nd.id, err)
	}
	nd.sk = sk
	return sk
}

// start opens (unless open) and runs node i.
func (ts *testSet) start(i int) {
	ts.t.Helper()
	nd := ts.nodes[i]
	if nd.sk == nil {
		ts.open(i)
	}
	var pg, hl net.Listener
	var err error
	for try := 0; try < 50; try++ {
		if pg, err = net.Listen("tcp", nd.pgAddr); err == nil {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		ts.t.Fatalf("listen: %v", err)
	}
	if hl, err = net.Listen("tcp", nd.httpAddr); err != nil {
		pg.Close()
		ts.t.Fatalf("listen: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	nd.cancel, nd.done = cancel, make(chan error, 1)
	sk := nd.sk
	go func() { nd.done <- sk.Run(ctx, pg, hl) }()
}

// kill stops node i abruptly, as kill -9 would: nothing more is
// persisted, files are just closed (the page cache keeps what was
// written, as the kernel does for a killed process).
func (ts *testSet) kill(i int) {
	ts.t.Helper()
	nd := ts.nodes[i]
	nd.cancel()
	<-nd.done
	nd.cancel = nil
	for _, tl := range nd.sk.Timelines() {
		tl.mu.Lock()
		tl.closed = true
		tl.wal.closeAll()
		tl.mu.Unlock()
	}
	nd.sk = nil
}

// stop stops node i cleanly.
func (ts *testSet) stop(i int) {
	ts.t.Helper()
	nd := ts.nodes[i]
	if nd.cancel != nil {
		nd.cancel()
		<-nd.done
		nd.cancel = nil
	}
	if err := nd.sk.Close(); err != nil {
		ts.t.Errorf("close safekeeper %d: %v", nd.id, err)
	}
	nd.sk = nil
}

// tl returns node i's timeline of the set (nil if it has none).
func (ts *testSet) tl(i int) *Timeline {
	ts.t.Helper()
	tl, err := ts.nodes[i].sk.Timeline(ts.tenant, ts.timeline, false)
	if err != nil {
		ts.t.Fatal(err)
	}
	return tl
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t testing.TB, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// readPGWAL reads the WAL [from, to) from a data directory's pg_wal.
func readPGWAL(t testing.TB, pgdataDir string, from, to pgdata.LSN) []byte {
	t.Helper()
	out := make([]byte, 0, to-from)
	for pos := from; pos < to; {
		seg := pos.SegmentNo(pgdata.WALSegmentSize)
		off := pos.SegmentOffset(pgdata.WALSegmentSize)
		n := min(uint64(to-pos), pgdata.WALSegmentSize-off)
		b, err := os.ReadFile(filepath.Join(pgdataDir, "pg_wal", pgdata.WALFileName(1, seg, pgdata.WALSegmentSize)))
		if err != nil {
			t.Fatal(err)
		}
		out = append(out, b[off:off+n]...)
		pos += pgdata.LSN(n)
	}
	return out
}

// checkWAL fails unless tl's WAL [from, to) is want.
func checkWAL(t testing.TB, name string, tl *Timeline, from pgdata.LSN, want []byte) {
	t.Helper()
	got := make([]byte, len(want))
	if err := tl.ReadWAL(got, from); err != nil {
		t.Fatalf("%s: read WAL: %v", name, err)
	}
	if !bytes.Equal(got, want) {
		i := 0
		for i < len(got) && got[i] == want[i] {
			i++
		}
		t.Fatalf("%s: WAL differs from the compute's at %s", name, from+pgdata.LSN(i))
	}
}
