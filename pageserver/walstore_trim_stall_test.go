package pageserver

import (
	"context"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/value"
)

// heldTrim is a WAL store whose trim waits, as it does for a writer held
// in an fsync that does not return, until release is closed.
type heldTrim struct {
	timelineWAL
	calls   atomic.Int32
	release chan struct{}
}

func (h *heldTrim) TrimBelow(pgdata.LSN) error {
	h.calls.Add(1)
	<-h.release
	return nil
}

// trimmed is a WAL store that records where it was trimmed.
type trimmed struct {
	timelineWAL
	below atomic.Uint64
}

func (w *trimmed) TrimBelow(lsn pgdata.LSN) error {
	w.below.Store(uint64(lsn))
	return nil
}

// TestTrimWALPastAStalledStore: a WAL store whose trim does not return
// (its writer is held in an fsync) must not keep the other timelines'
// stores from being trimmed, nor be asked again while its trim waits.
// Before, trimWAL went through the stores one after the other and waited
// for each, so every store after the held one grew for as long as the
// disk did not answer.
func TestTrimWALPastAStalledStore(t *testing.T) {
	ctx := context.Background()
	r := openTestRepo(t, t.TempDir())
	defer r.Close()
	conf := repo.DefaultTenantConfig()
	conf.GCHorizon, conf.PITRInterval = 0, 0
	timeline := func() (*repo.Tenant, *repo.Timeline) {
		tn, err := r.CreateTenant(id.NewTenantID(), conf)
		if err != nil {
			t.Fatal(err)
		}
		tl, err := tn.CreateTimeline(id.NewTimelineID(), 0x100)
		if err != nil {
			t.Fatal(err)
		}
		rel := pgdata.RelFileNode{SpcNode: 1663, DbNode: 5, RelNode: 16384}
		if err := tl.Put(key.RelBlock(rel, pgdata.ForkMain, 0), 0x200, value.Image(make([]byte, 8192))); err != nil {
			t.Fatal(err)
		}
		if err := tl.FinishWrite(0x200, 0x1f8); err != nil {
			t.Fatal(err)
		}
		if err := tl.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		if err := tl.GC(ctx); err != nil {
			t.Fatal(err)
		}
		return tn, tl
	}
	tnA, tlA := timeline()
	tnB, tlB := timeline()
	held := &heldTrim{release: make(chan struct{})}
	defer close(held.release)
	ts := &tenants{repo: r, log: zerolog.Nop(), trimWait: time.Second, byID: map[id.TenantID]*tenant{
		tnA.ID(): {id: tnA.ID(), tn: tnA, log: zerolog.Nop(), wal: map[id.TimelineID]timelineWAL{tlA.ID(): held}},
	}}
	for round := 1; round <= 2; round++ {
		// B comes and goes between rounds: a fresh recorder each time.
		w := &trimmed{}
		ts.byID[tnB.ID()] = &tenant{id: tnB.ID(), tn: tnB, log: zerolog.Nop(), wal: map[id.TimelineID]timelineWAL{tlB.ID(): w}}
		done := make(chan struct{})
		go func() { ts.trimWAL(); close(done) }()
		select {
		case <-done:
		case <-time.After(time.Minute):
			t.Fatalf("round %d: trimWAL waits for the held store", round)
		}
		// B's trim and A's call may still be on their way under load.
		for deadline := time.Now().Add(time.Minute); (w.below.Load() == 0 || held.calls.Load() == 0) && time.Now().Before(deadline); {
			time.Sleep(time.Millisecond)
		}
		if got := pgdata.LSN(w.below.Load()); got != 0x200 {
			t.Errorf("round %d: B's WAL removed below %v, want below 0/200", round, got)
		}
		if n := held.calls.Load(); n != 1 {
			t.Errorf("round %d: the held store was asked to trim %d times, want once", round, n)
		}
	}
}
