package pageserver

import (
	"context"
	"testing"

	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/value"
)

// trimRecorder is a timeline's WAL side that records TrimBelow.
type trimRecorder struct {
	timelineWAL
	removedBelow pgdata.LSN
}

func (r *trimRecorder) TrimBelow(lsn pgdata.LSN) error {
	r.removedBelow = lsn
	return nil
}

// TestTrimWAL: the WAL store is trimmed below both the timeline's durable
// LSN and its GC cut-off (which the PITR window and GC horizon hold back),
// whichever is lower: before the cut-off passed the durable LSN it was
// not trimmed at all, and grew without bound under a steady load.
func TestTrimWAL(t *testing.T) {
	ctx := context.Background()
	r := openTestRepo(t, t.TempDir())
	defer r.Close()
	conf := repo.DefaultTenantConfig()
	conf.GCHorizon, conf.PITRInterval = 0, 0
	tn, err := r.CreateTenant(id.NewTenantID(), conf)
	if err != nil {
		t.Fatal(err)
	}
	tl, err := tn.CreateTimeline(id.NewTimelineID(), 0x100)
	if err != nil {
		t.Fatal(err)
	}
	rel := pgdata.RelFileNode{SpcNode: 1663, DbNode: 5, RelNode: 16384}
	write := func(lsn pgdata.LSN) {
		if err := tl.Put(key.RelBlock(rel, pgdata.ForkMain, 0), lsn, value.Image(make([]byte, 8192))); err != nil {
			t.Fatal(err)
		}
		if err := tl.FinishWrite(lsn, lsn-8); err != nil {
			t.Fatal(err)
		}
		if err := tl.Flush(ctx); err != nil {
			t.Fatal(err)
		}
	}
	w := &trimRecorder{}
	ts := &tenants{repo: r, log: zerolog.Nop(), byID: map[id.TenantID]*tenant{
		tn.ID(): {id: tn.ID(), tn: tn, log: zerolog.Nop(), wal: map[id.TimelineID]timelineWAL{tl.ID(): w}},
	}}
	write(0x200)
	ts.trimWAL()
	if w.removedBelow > 0x100 {
		t.Errorf("before GC (cut-off %v): WAL removed below %v, want nothing after the timeline's start 0/100", tl.GCCutoff(), w.removedBelow)
	}
	if err := tl.GC(ctx); err != nil {
		t.Fatal(err)
	}
	ts.trimWAL()
	if w.removedBelow != 0x200 {
		t.Errorf("after GC to %v: WAL removed below %v, want below the durable LSN %v", tl.GCCutoff(), w.removedBelow, tl.DurableLSN())
	}
	write(0x300)
	ts.trimWAL()
	if w.removedBelow != 0x200 {
		t.Errorf("with the GC cut-off at %v and the durable LSN at %v: WAL removed below %v, want no further than the cut-off", tl.GCCutoff(), tl.DurableLSN(), w.removedBelow)
	}
	// The cut-off moves on while the durable LSN is ahead of it: the
	// store follows the cut-off.
	conf.GCHorizon = 0x80
	if err := tn.SetConfig(conf); err != nil {
		t.Fatal(err)
	}
	write(0x400)
	if err := tl.GC(ctx); err != nil {
		t.Fatal(err)
	}
	if tl.GCCutoff() >= tl.DurableLSN() {
		t.Fatalf("GC cut-off %v, durable LSN %v: the test wants the cut-off below", tl.GCCutoff(), tl.DurableLSN())
	}
	ts.trimWAL()
	if w.removedBelow != tl.GCCutoff() {
		t.Errorf("with the GC cut-off at %v below the durable LSN %v: WAL removed below %v, want below the cut-off", tl.GCCutoff(), tl.DurableLSN(), w.removedBelow)
	}
}
