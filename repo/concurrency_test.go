package repo_test

import (
	"context"
	"errors"
	"fmt"
	"math/rand"
	"sync"
	"testing"
	"time"

	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/vfs"
)

// TestConcurrentReadsDuringBackgroundWork reads random keys at random
// retained LSNs, from several goroutines, while a writer ingests and the
// background loops flush, compact and collect garbage as fast as they
// can: every read must match the model (or be refused as below the GC
// cut-off, when GC overtook it).
func TestConcurrentReadsDuringBackgroundWork(t *testing.T) {
	mem := vfs.NewMem()
	cfg := testConfig(mem)
	cfg.PageCacheSize = 64 << 10
	cfg.FlushInterval, cfg.CompactionInterval, cfg.GCInterval = time.Millisecond, time.Millisecond, time.Millisecond
	r := mustOpen(t, cfg)
	defer r.Close()
	conf := smallTenantConfig()
	conf.CheckpointDistance = 2 << 10
	conf.CompactionThreshold = 2
	conf.ImageCreationThreshold = 1
	conf.GCHorizon = 0x2000
	tn, err := r.CreateTenant(id.NewTenantID(), conf)
	if err != nil {
		t.Fatal(err)
	}
	m := &modelTimeline{id: id.NewTimelineID(), values: map[key.Key][]modelValue{}}
	tl, err := tn.CreateTimeline(m.id, 0)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.RWMutex // guards m
	keys := keySpace[:8]
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	errs := make(chan error, 4)
	wg.Add(1)
	go func() { // the writer
		defer wg.Done()
		rng := rand.New(rand.NewSource(1))
		for lsn := pgdata.LSN(0x100); ctx.Err() == nil; lsn += 0x10 {
			k := keys[rng.Intn(len(keys))]
			v := rec(fmt.Sprintf("<%v>", lsn))
			if rng.Intn(5) == 0 {
				v = img(fmt.Sprintf("<%v>", lsn))
			}
			mu.Lock()
			m.values[k] = append(m.values[k], modelValue{lsn, v})
			mu.Unlock()
			if err := tl.Put(k, lsn, v); err != nil {
				errs <- err
				return
			}
			if err := tl.FinishWrite(lsn, lsn-0x10); err != nil {
				errs <- err
				return
			}
		}
	}()
	reads := make([]int, 3)
	for i := range reads {
		wg.Add(1)
		go func(i int) { // a reader
			defer wg.Done()
			rng := rand.New(rand.NewSource(int64(i)))
			for ctx.Err() == nil {
				cutoff, last := tl.GCCutoff(), tl.LastRecordLSN()
				lsn := cutoff + pgdata.LSN(rng.Int63n(int64(last-cutoff)+1))
				k := keys[rng.Intn(len(keys))]
				got, err := tl.Get(context.Background(), k, lsn)
				mu.RLock()
				want, found := m.get(k, lsn)
				mu.RUnlock()
				switch {
				case errors.Is(err, repo.ErrBelowGCCutoff):
				case !found && errors.Is(err, repo.ErrKeyNotFound):
				case err != nil:
					errs <- fmt.Errorf("Get(%v, %v): %w", k, lsn, err)
					return
				case string(got) != string(want):
					errs <- fmt.Errorf("Get(%v, %v) = %q, want %q", k, lsn, got, want)
					return
				}
				reads[i]++
			}
		}(i)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	t.Logf("reads %v; last record %v, disk-consistent %v, GC cut-off %v", reads, tl.LastRecordLSN(), tl.DiskConsistentLSN(), tl.GCCutoff())
	if tl.GCCutoff() == 0 || tl.DiskConsistentLSN() == 0 {
		t.Errorf("the background loops did not run: disk-consistent %v, GC cut-off %v", tl.DiskConsistentLSN(), tl.GCCutoff())
	}
}
