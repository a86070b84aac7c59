package repo_test

import (
	"context"
	"errors"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/remote"
	"github.com/zenithdb/zenith/repo/remote/s3test"
	"github.com/zenithdb/zenith/repo/vfs"
)

// TestOnDemandFetchS3Killed reads a tenant attached on an empty disk with
// a disk budget of one byte, so that every read of a layer fetches it
// from a real S3 server, and kills the server (SIGKILL) and restarts it
// while readers go on. A read while the server is down fails with an
// error naming the layer file it could not fetch and leaves no file
// behind; no read ever answers a wrong value; reads answer again once the
// server is back, without restarting the page server.
func TestOnDemandFetchS3Killed(t *testing.T) {
	if testing.Short() {
		t.Skip("starts versitygw; skipped in -short mode")
	}
	ctx := context.Background()
	srv := s3test.Start(t, "zenith")
	srv.Setenv(t)
	st, err := remote.NewS3(ctx, "zenith", "ondemand", remote.S3Options{Endpoint: srv.Endpoint, MaxAttempts: 2, RequestTimeout: 10 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	s := &remoteSetup{remote: st}
	w := s.open(t, nil)
	tid, main := id.NewTenantID(), id.NewTimelineID()
	tn, tl := createTimeline(t, w, tid, main, 0xF0)
	writeHistory(t, tl, 0, 64)
	if err := tn.Compact(ctx); err != nil {
		t.Fatal(err)
	}
	if err := tn.Upload(ctx); err != nil {
		t.Fatal(err)
	}
	end := tl.RemoteConsistentLSN()
	want := readAll(t, tl, end)
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}

	disk := vfs.NewMem()
	r := s.openWith(t, disk, func(c *repo.Config) { c.LayerDiskBudget = 1 })
	defer r.Close()
	tl2 := attachTimeline(t, r, tid, 1, main)
	tn2, err := r.Tenant(tid)
	if err != nil {
		t.Fatal(err)
	}
	// The first upload learns which layers remote storage holds, so that
	// they can be evicted.
	if err := tn2.Upload(ctx); err != nil {
		t.Fatal(err)
	}
	dir := "/work/tenants/" + tid.String() + "/timelines/" + main.String()

	// readRound evicts every layer and reads every page at every LSN:
	// each read answers want or an error; it returns the first error.
	var wrong atomic.Int64
	readRound := func() error {
		if _, err := r.Evict(); err != nil {
			return err
		}
		var first error
		for lsn := pgdata.LSN(0x100); lsn <= end; lsn += 0x10 {
			for b := uint32(0); b < 4; b++ {
				v, err := tl2.Get(ctx, blk(b), lsn)
				if errors.Is(err, repo.ErrKeyNotFound) {
					continue
				}
				if err != nil {
					if first == nil {
						first = err
					}
					continue
				}
				k := lsn.String() + "/" + string(rune('0'+b))
				if string(v) != want[k] {
					wrong.Add(1)
					t.Errorf("at %s read %q, want %q", k, v, want[k])
				}
			}
		}
		return first
	}

	srv.Stop()
	err = readRound()
	if err == nil {
		t.Fatal("every read answered with the S3 server killed and no layer on the local disk")
	}
	t.Logf("a read with the S3 server killed: %v", err)
	if !strings.Contains(err.Error(), "fetch layer file") || !strings.Contains(err.Error(), "tenants/"+tid.String()+"/timelines/"+main.String()+"/") {
		t.Errorf("a read with the S3 server down: %v; want an error naming the layer file and its remote object", err)
	}
	if n := layerFilesIn(t, disk, dir); n != 0 {
		t.Errorf("%d layer files on the local disk after fetches that failed, want none", n)
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := readRound(); err != nil {
		t.Fatalf("with the S3 server back: %v", err)
	}

	// Readers go on while the server is killed and restarted: each
	// outage waits for a read to fail, each restart for a whole round
	// to succeed.
	var failed, succeeded atomic.Int64
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if err := readRound(); err != nil {
					failed.Add(1)
				} else {
					succeeded.Add(1)
				}
			}
		}()
	}
	waitCount := func(c *atomic.Int64, what string) {
		t.Helper()
		from := c.Load()
		for deadline := time.Now().Add(2 * time.Minute); c.Load() == from; time.Sleep(20 * time.Millisecond) {
			if time.Now().After(deadline) {
				close(stop)
				wg.Wait()
				t.Fatalf("no %s in 2 minutes", what)
			}
		}
	}
	for range 3 {
		waitCount(&succeeded, "round of reads succeeding")
		srv.Stop()
		waitCount(&failed, "read failing with the S3 server killed")
		if err := srv.Restart(); err != nil {
			t.Fatal(err)
		}
	}
	waitCount(&succeeded, "round of reads succeeding after the last restart")
	close(stop)
	wg.Wait()
	t.Logf("%d rounds of reads failed, %d succeeded, %d layer fetches", failed.Load(), succeeded.Load(), r.RemoteStats().LayerFetches.Load())
	if wrong.Load() > 0 {
		t.Fatalf("%d reads answered a wrong value", wrong.Load())
	}
}
