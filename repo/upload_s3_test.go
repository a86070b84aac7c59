package repo_test

import (
	"context"
	"io"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/remote"
	"github.com/zenithdb/zenith/repo/remote/s3test"
)

// TestRemoteS3ConnectionCuts uploads to a real S3 server through a TCP
// proxy that cuts every connection after a few kilobytes in some rounds:
// uploads fail part way (layers and indexes alike) and are retried. After
// every round, a page server that lost its disk restores exactly the
// remote-consistent LSN and reads every value right there: never a
// corrupt or half-uploaded state, never an LSN that was not uploaded.
func TestRemoteS3ConnectionCuts(t *testing.T) {
	if testing.Short() {
		t.Skip("starts versitygw; skipped in -short mode")
	}
	ctx := context.Background()
	srv := s3test.Start(t, "zenith")
	srv.Setenv(t)
	u, err := url.Parse(srv.Endpoint)
	if err != nil {
		t.Fatal(err)
	}
	px := startCuttingProxy(t, u.Host)
	st, err := remote.NewS3(ctx, "zenith", "cuts", remote.S3Options{Endpoint: "http://" + px.addr(), MaxAttempts: 2})
	if err != nil {
		t.Fatal(err)
	}
	s := &remoteSetup{remote: st}
	r := s.open(t, nil)
	defer r.Close()
	tid, main := id.NewTenantID(), id.NewTimelineID()
	tn, tl := createTimeline(t, r, tid, main, 0xF0)
	failed := 0
	for round := 0; round < 8; round++ {
		writeHistory(t, tl, round*16, 16)
		if round%2 == 1 {
			px.limit.Store(3000)
		}
		if err := tn.Upload(ctx); err != nil {
			failed++
			t.Logf("round %d: upload failed: %v", round, err)
		}
		px.limit.Store(0)
		rlsn := tl.RemoteConsistentLSN()
		if rlsn > tl.DiskConsistentLSN() {
			t.Fatalf("round %d: remote-consistent LSN %v above the disk-consistent %v", round, rlsn, tl.DiskConsistentLSN())
		}
		if rlsn == 0 {
			continue
		}
		// Another page server attaches the tenant (and then this one
		// again, at the generation after).
		r2 := s.open(t, nil)
		gen := repo.Generation(2*round + 1)
		tl2 := attachTimeline(t, r2, tid, gen, main)
		if got := tl2.DiskConsistentLSN(); got != rlsn {
			t.Errorf("round %d: restored at %v, want the remote-consistent LSN %v", round, got, rlsn)
		}
		for b := uint32(0); b < 4; b++ {
			// The last record i <= rlsn that wrote block b.
			i := (int(rlsn-0x100)/0x10)/4*4 + int(b)
			if pgdata.LSN(0x100+i*0x10) > rlsn {
				i -= 4
			}
			wantGet(t, tl2, blk(b), rlsn, string(rune('a'+i%26)))
		}
		if err := r2.Close(); err != nil {
			t.Fatal(err)
		}
		if _, err := r.AttachTenant(ctx, tid, gen+1); err != nil {
			t.Fatal(err)
		}
	}
	if failed == 0 {
		t.Errorf("no upload failed: the proxy cut nothing, the test tested nothing")
	}
	if err := tn.Upload(ctx); err != nil {
		t.Fatalf("upload with the connections whole again: %v", err)
	}
	if got, want := tl.RemoteConsistentLSN(), tl.DiskConsistentLSN(); got != want {
		t.Errorf("remote-consistent LSN at the end = %v, want %v", got, want)
	}
}

// cuttingProxy forwards TCP connections to an upstream address; while
// limit is positive, it cuts each connection once it has forwarded limit
// bytes towards the upstream.
type cuttingProxy struct {
	ln    net.Listener
	limit atomic.Int64
	wg    sync.WaitGroup
}

func startCuttingProxy(t *testing.T, upstream string) *cuttingProxy {
	t.Helper()
	// An in-process listener kept open for the test's life: no port is
	// picked and released, so none can be taken in between.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cuttingProxy{ln: ln}
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.wg.Add(1)
			go func() {
				defer p.wg.Done()
				p.serve(c, upstream)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		p.wg.Wait()
	})
	return p
}

func (p *cuttingProxy) addr() string { return p.ln.Addr().String() }

func (p *cuttingProxy) serve(c net.Conn, upstream string) {
	defer c.Close()
	up, err := net.Dial("tcp", upstream)
	if err != nil {
		return
	}
	defer up.Close()
	done := make(chan struct{}, 2)
	go func() {
		_, _ = io.Copy(c, up)
		done <- struct{}{}
	}()
	go func() {
		var sent int64
		buf := make([]byte, 512)
		for {
			n, err := c.Read(buf)
			if n > 0 {
				if l := p.limit.Load(); l > 0 && sent+int64(n) > l {
					break
				}
				if _, werr := up.Write(buf[:n]); werr != nil {
					break
				}
				sent += int64(n)
			}
			if err != nil {
				break
			}
		}
		done <- struct{}{}
	}()
	<-done
}
