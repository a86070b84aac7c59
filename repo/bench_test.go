package repo_test

import (
	"context"
	"fmt"
	"math/rand"
	"sort"
	"testing"
	"time"

	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/value"
	"github.com/zenithdb/zenith/repo/vfs"
)

// benchRepo is a repository on the real disk, in a temporary directory.
func benchRepo(b *testing.B, pageCache int64, flushInterval time.Duration) (*repo.Repository, *repo.Timeline, *repo.Tenant) {
	b.Helper()
	cfg := testConfig(vfs.Default)
	cfg.Workdir = b.TempDir()
	cfg.PageCacheSize = pageCache
	cfg.FlushInterval = flushInterval
	r := mustOpen(b, cfg)
	b.Cleanup(func() { r.Close() })
	conf := repo.DefaultTenantConfig()
	conf.CheckpointDistance = 64 << 20
	tn, tl := newTimeline(b, r, conf)
	return r, tl, tn
}

// BenchmarkBranch creates branches of a timeline holding 1,000 and
// 1,000,000 keys: the cost must not depend on the ancestor's size (it
// writes one metadata file and fsyncs three directories).
func BenchmarkBranch(b *testing.B) {
	for _, n := range []int{1000, 1000000} {
		b.Run(fmt.Sprintf("ancestor-keys=%d", n), func(b *testing.B) {
			ctx := context.Background()
			_, tl, tn := benchRepo(b, 0, 0)
			const perRecord = 1000
			for i := 0; i < n; i += perRecord {
				lsn := pgdata.LSN(0x100 + i)
				for j := i; j < i+perRecord && j < n; j++ {
					if err := tl.Put(blk(uint32(j)), lsn, value.Image([]byte("sixteen byte val"))); err != nil {
						b.Fatal(err)
					}
				}
				if err := tl.FinishWrite(lsn, 0); err != nil {
					b.Fatal(err)
				}
			}
			if err := tl.Flush(ctx); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for b.Loop() {
				if _, err := tn.Branch(ctx, id.NewTimelineID(), tl.ID(), 0); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkIngest puts one value per record into 10,000 pages (as heap
// inserts do, or full-page images) and flushes at the end; throughput is
// MB/s of values, including the background flushes and the final one.
func BenchmarkIngest(b *testing.B) {
	for _, size := range []int{128, pgdata.BlockSize} {
		b.Run(fmt.Sprintf("value=%dB", size), func(b *testing.B) {
			ctx := context.Background()
			_, tl, _ := benchRepo(b, 0, 100*time.Millisecond)
			rng := rand.New(rand.NewSource(1))
			val := make([]byte, size)
			rng.Read(val)
			b.SetBytes(int64(size))
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				lsn := pgdata.LSN(0x100 + 8*i)
				if err := tl.Put(blk(uint32(rng.Intn(10000))), lsn, value.WALRecord(val, false)); err != nil {
					b.Fatal(err)
				}
				if err := tl.FinishWrite(lsn, lsn-8); err != nil {
					b.Fatal(err)
				}
			}
			if err := tl.Flush(ctx); err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkGetPage reads pages made of an 8 KiB image and 0, 10 or 100
// records of 100 bytes, spread over ten flushed delta layers, with the page
// cache off (every read walks the layers; the redo is the test stand-in).
// It reports p50 and p99 latency.
func BenchmarkGetPage(b *testing.B) {
	const keys = 1000
	for _, deltas := range []int{0, 10, 100} {
		b.Run(fmt.Sprintf("deltas=%d", deltas), func(b *testing.B) {
			ctx := context.Background()
			_, tl, _ := benchRepo(b, 0, 0)
			lsn := pgdata.LSN(0x100)
			page := make([]byte, pgdata.BlockSize)
			for k := uint32(0); k < keys; k++ {
				if err := tl.Put(blk(k), lsn, value.Image(page)); err != nil {
					b.Fatal(err)
				}
			}
			if err := tl.FinishWrite(lsn, 0); err != nil {
				b.Fatal(err)
			}
			rec := make([]byte, 100)
			for d := 0; d < deltas; d++ {
				lsn += 8
				for k := uint32(0); k < keys; k++ {
					if err := tl.Put(blk(k), lsn, value.WALRecord(rec, false)); err != nil {
						b.Fatal(err)
					}
				}
				if err := tl.FinishWrite(lsn, lsn-8); err != nil {
					b.Fatal(err)
				}
				if (d+1)%max(1, deltas/10) == 0 {
					if err := tl.Flush(ctx); err != nil {
						b.Fatal(err)
					}
				}
			}
			if err := tl.Flush(ctx); err != nil {
				b.Fatal(err)
			}
			rng := rand.New(rand.NewSource(1))
			lat := make([]time.Duration, 0, b.N)
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				k := blk(uint32(rng.Intn(keys)))
				start := time.Now()
				got, err := tl.Get(ctx, k, lsn)
				lat = append(lat, time.Since(start))
				if err != nil || len(got) != pgdata.BlockSize+100*deltas {
					b.Fatalf("Get(%v) = %d bytes, %v", k, len(got), err)
				}
			}
			b.StopTimer()
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			b.ReportMetric(float64(lat[len(lat)/2].Nanoseconds())/1e3, "p50-µs")
			b.ReportMetric(float64(lat[len(lat)*99/100].Nanoseconds())/1e3, "p99-µs")
		})
	}
}

// BenchmarkScan reads 8,192 pages in order, in runs of 128 as a lazy
// node's read-ahead fetches them: one Get each (get), or each run in one
// batch read, through the block cache (batch) or as a scan, without it
// (scan). The layer fits the block cache: the scan decodes every block
// of every run, the others find them in the cache. The pages are half random, half zeros, so that the
// layer's blocks compress as table pages do.
func BenchmarkScan(b *testing.B) {
	const keys, run = 8192, 128
	ctx := context.Background()
	_, tl, _ := benchRepo(b, 0, 0)
	lsn := pgdata.LSN(0x100)
	rng := rand.New(rand.NewSource(1))
	page := make([]byte, pgdata.BlockSize)
	for k := uint32(0); k < keys; k++ {
		rng.Read(page[:pgdata.BlockSize/2])
		if err := tl.Put(blk(k), lsn, value.Image(page)); err != nil {
			b.Fatal(err)
		}
	}
	if err := tl.FinishWrite(lsn, 0); err != nil {
		b.Fatal(err)
	}
	if err := tl.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	for _, mode := range []string{"get", "batch", "scan"} {
		b.Run(mode, func(b *testing.B) {
			b.SetBytes(keys * pgdata.BlockSize)
			for i := 0; i < b.N; i++ {
				for first := uint32(0); first < keys; first += run {
					rctx, end := ctx, func() error { return nil }
					if mode != "get" {
						rctx, end = repo.WithBatchRead(ctx, mode == "scan")
					}
					for k := first; k < first+run; k++ {
						got, err := tl.GetReadOnly(rctx, blk(k), lsn)
						if err != nil || len(got) != pgdata.BlockSize {
							b.Fatalf("GetReadOnly(%v) = %d bytes, %v", blk(k), len(got), err)
						}
					}
					if err := end(); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*keys)/1e3, "µs/page")
		})
	}
}
