package repo_test

import (
	"strings"
	"testing"
	"time"

	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/tomlconf"
	"github.com/zenithdb/zenith/repo/value"
	"github.com/zenithdb/zenith/repo/vfs"
)

// TestStalledFlushHoldsUpNoOtherTenant stalls the fsync of tenant A's
// layer file in the background flush (the disk stops answering) and
// checks that tenant B's layers are still flushed by the background loop,
// that A's own data stays readable, that A reports its flush in progress
// and keeps its disk-consistent LSN until the fsync returns, and that
// everything of both is there after the release. Before, the background
// flush went through the timelines one after the other, so B's layers
// waited behind A's fsync for as long as it took.
func TestStalledFlushHoldsUpNoOtherTenant(t *testing.T) {
	fs := vfs.NewFaulty(vfs.NewMem())
	cfg := testConfig(fs)
	cfg.FlushInterval = 10 * time.Millisecond
	cfg.Logger = testLogger(t)
	r := mustOpen(t, cfg)
	defer r.Close()
	conf := smallTenantConfig()
	conf.CheckpointTimeout = tomlconf.Duration(10 * time.Millisecond)
	timeline := func(tid id.TenantID) *repo.Timeline {
		tn, err := r.CreateTenant(tid, conf)
		if err != nil {
			t.Fatal(err)
		}
		tl, err := tn.CreateTimeline(id.NewTimelineID(), 0)
		if err != nil {
			t.Fatal(err)
		}
		return tl
	}
	tidA := id.NewTenantID()
	a, b := timeline(tidA), timeline(id.NewTenantID())
	gate := vfs.NewGate(vfs.OpSync, func(name string) bool { return strings.Contains(name, tidA.String()) })
	fs.SetRule(gate.Rule)
	defer gate.Release() // before Close, which flushes

	lsnOf := func(i int) pgdata.LSN { return pgdata.LSN(0x100 + 0x10*i) }
	one := func(tl *repo.Timeline, i int) {
		put(t, tl, lsnOf(i), map[key.Key]value.Value{blk(uint32(i)): value.Image([]byte{byte(i)})})
	}
	one(a, 0)
	select {
	case <-gate.Held():
	case <-time.After(time.Minute):
		t.Fatal("the background flush of A did not start")
	}
	if op, since := a.FlushStalled(time.Now(), 0); op == "" || since.IsZero() {
		t.Errorf("A's flush is held, FlushStalled = %q since %v; want it named", op, since)
	}
	const n = 5
	for i := range n {
		one(b, i)
		waitFor(t, "B's background flush while A's fsync is stalled", func() bool { return b.DiskConsistentLSN() == lsnOf(i) })
	}
	if op, _ := b.FlushStalled(time.Now(), 0); op != "" {
		t.Errorf("B reports %q in progress with nothing to flush", op)
	}
	wantGet(t, a, blk(0), lsnOf(0), "\x00")
	if got := a.DiskConsistentLSN(); got >= lsnOf(0) {
		t.Errorf("A's disk-consistent LSN %v before its fsync returned", got)
	}

	gate.Release()
	waitFor(t, "A's flush after the release", func() bool { return a.DiskConsistentLSN() == lsnOf(0) })
	if op, _ := a.FlushStalled(time.Now(), 0); op != "" {
		t.Errorf("A still reports %q after its flush", op)
	}
	wantGet(t, a, blk(0), lsnOf(0), "\x00")
	for i := range n {
		wantGet(t, b, blk(uint32(i)), lsnOf(n-1), string([]byte{byte(i)}))
	}
}

// waitFor polls cond until it holds, failing the test after a minute.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(time.Minute); !cond(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}
