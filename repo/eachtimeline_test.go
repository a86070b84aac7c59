package repo

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/vfs"
)

// TestEachTimelinePastAStalledOne: background work held on one timeline
// (its disk does not answer) holds up the others' for the turn's wait at
// most, with turns or without, and the held timeline is skipped, not
// worked on twice, until its work returns.
func TestEachTimelinePastAStalledOne(t *testing.T) {
	cfg := DefaultConfig("/work")
	cfg.FS, cfg.Redo = vfs.NewMem(), nopRedo{}
	cfg.FlushInterval, cfg.CompactionInterval, cfg.GCInterval = 0, 0, 0
	r, err := Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	var tls []*Timeline
	for range 3 {
		tn, err := r.CreateTenant(id.NewTenantID(), DefaultTenantConfig())
		if err != nil {
			t.Fatal(err)
		}
		tl, err := tn.CreateTimeline(id.NewTimelineID(), 0x100)
		if err != nil {
			t.Fatal(err)
		}
		tls = append(tls, tl)
	}
	stalled := tls[1]
	for _, tc := range []struct {
		name string
		loop int
		wait time.Duration
	}{
		{"all at once", loopFlush, 0},
		{"taking turns", loopCompaction, 50 * time.Millisecond},
	} {
		t.Run(tc.name, func(t *testing.T) {
			release := make(chan struct{})
			var mu sync.Mutex
			runs := map[*Timeline]int{}
			work := func(_ context.Context, tl *Timeline) {
				mu.Lock()
				runs[tl]++
				mu.Unlock()
				if tl == stalled {
					<-release
				}
			}
			for round := 1; round <= 2; round++ {
				// Without turns, the others' work of the round before
				// may still be on its way: a busy timeline is skipped.
				for deadline := time.Now().Add(time.Minute); tls[0].busy[tc.loop].Load() || tls[2].busy[tc.loop].Load(); time.Sleep(time.Millisecond) {
					if time.Now().After(deadline) {
						t.Fatal("the work on the timelines not held did not return")
					}
				}
				done := make(chan struct{})
				go func() { r.eachTimeline(r.ctx, tc.loop, tc.wait, work); close(done) }()
				select {
				case <-done:
				case <-time.After(time.Minute):
					close(release)
					t.Fatalf("round %d waits for the stalled timeline", round)
				}
			}
			// The others' work may still be on its way without turns.
			for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
				mu.Lock()
				n := runs[tls[0]] + runs[tls[2]]
				mu.Unlock()
				if n == 4 {
					break
				}
			}
			mu.Lock()
			for i, tl := range tls {
				want := 2
				if tl == stalled {
					want = 1
				}
				if runs[tl] != want {
					t.Errorf("timeline %d worked on %d times in two rounds, want %d", i, runs[tl], want)
				}
			}
			mu.Unlock()
			close(release)
		})
	}
}
