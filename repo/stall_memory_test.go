package repo_test

import (
	"bytes"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/tomlconf"
	"github.com/zenithdb/zenith/repo/value"
	"github.com/zenithdb/zenith/repo/vfs"
)

// TestStalledFlushAtTheMemoryLimit holds tenant A's layer flush while A
// ingests until its writer stops, with the in-memory layers at their
// limit, most of them A's, which cannot be written. Tenant B must still
// ingest everything (its writer flushes its own layers each time it
// freezes them, at half the limit of open layers), A must keep
// every value readable, and after the release both must be on disk.
func TestStalledFlushAtTheMemoryLimit(t *testing.T) {
	const (
		limit   = 64 << 10
		recSize = 4 << 10
		records = 200
	)
	fs := vfs.NewFaulty(vfs.NewMem())
	cfg := testConfig(fs)
	cfg.InMemoryLayerLimit = limit
	cfg.FlushInterval = 10 * time.Millisecond
	cfg.Logger = testLogger(t)
	r := mustOpen(t, cfg)
	defer r.Close()
	conf := repo.DefaultTenantConfig()
	conf.CheckpointTimeout = tomlconf.Duration(time.Hour)
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

	payload := func(i int) []byte { return bytes.Repeat([]byte{byte(i)}, recSize) }
	lsnOf := func(i int) pgdata.LSN { return pgdata.LSN(0x100 + 0x10*i) }
	write := func(tl *repo.Timeline, i int) error {
		if err := tl.Put(blk(uint32(i)), lsnOf(i), value.Image(payload(i))); err != nil {
			return err
		}
		return tl.FinishWrite(lsnOf(i), lsnOf(i)-8)
	}
	var writtenA atomic.Int64
	doneA := make(chan struct{})
	go func() {
		defer close(doneA)
		for i := range records {
			if err := write(a, i); err != nil {
				t.Error(err)
				return
			}
			writtenA.Add(1)
		}
	}()
	// A's writer stops: its flush is held and memory is at the limit.
	var stopped int64 = -1
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
		n := writtenA.Load()
		time.Sleep(300 * time.Millisecond)
		if n == writtenA.Load() && n > 0 {
			stopped = n
			break
		}
	}
	if stopped < 0 || stopped >= records {
		t.Fatalf("A's writer did not stop with its flush held (%d of %d records)", writtenA.Load(), records)
	}
	held := r.MemoryStats()
	t.Logf("A stopped after %d records; in-memory layers %d open + %d frozen of %d", stopped,
		held.OpenLayerBytes, held.FrozenLayerBytes, held.InMemoryLayerLimit)

	doneB := make(chan struct{})
	go func() {
		defer close(doneB)
		for i := range records {
			if err := write(b, i); err != nil {
				t.Error(err)
				return
			}
		}
	}()
	select {
	case <-doneB:
	case <-time.After(2 * time.Minute):
		t.Fatalf("B's ingest stopped behind A's held flush (B at %v)", b.LastRecordLSN())
	}
	st := r.MemoryStats()
	t.Logf("B ingested %d records; in-memory layers %d open + %d frozen of %d; B on disk up to %v",
		records, st.OpenLayerBytes, st.FrozenLayerBytes, st.InMemoryLayerLimit, b.DiskConsistentLSN())
	if total := st.OpenLayerBytes + st.FrozenLayerBytes; total > limit+limit/2+2*recSize {
		t.Errorf("in-memory layers hold %d bytes, want within one and a half times the limit %d", total, limit)
	}
	if got, want := b.DiskConsistentLSN(), lsnOf(records-1)-0x10*(limit/2/recSize); got < want {
		t.Errorf("B on disk up to %v, want its writer to have flushed it (at least %v)", got, want)
	}
	for i := range int(stopped) {
		wantGet(t, a, blk(uint32(i)), lsnOf(int(stopped)-1), string(payload(i)))
	}

	gate.Release()
	select {
	case <-doneA:
	case <-time.After(2 * time.Minute):
		t.Fatalf("A's ingest did not go on after the release (A at %v)", a.LastRecordLSN())
	}
	for _, tl := range []*repo.Timeline{a, b} {
		if err := tl.Flush(t.Context()); err != nil {
			t.Fatal(err)
		}
		if got, want := tl.DiskConsistentLSN(), lsnOf(records-1); got != want {
			t.Errorf("%s: disk-consistent LSN %v, want %v", tl.ID(), got, want)
		}
		for i := range records {
			wantGet(t, tl, blk(uint32(i)), lsnOf(records-1), string(payload(i)))
		}
	}
}
