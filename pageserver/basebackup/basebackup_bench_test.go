package basebackup

import (
	"context"
	"fmt"
	"io"
	osexec "os/exec"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/pageserver/datadir"
	"github.com/zenithdb/zenith/pageserver/pstest"
	"github.com/zenithdb/zenith/pageserver/walingest"
	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/pgcluster"
	"github.com/zenithdb/zenith/repo/pgcluster/pgtest"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// BenchmarkLazyBasebackup times a lazy basebackup of a pgbench database
// (scale 5) with 300 more tables, imported, and its parts: the size
// lookups of every relation fork, and the rest (directories, catalog
// files, SLRUs, tar).
//
//	go test -run '^$' -bench LazyBasebackup -benchtime 20x ./pageserver/basebackup/
func BenchmarkLazyBasebackup(b *testing.B) {
	ctx := context.Background()
	src := pgtest.Start(b, nil)
	conn, err := pgx.Connect(ctx, src.ConnString("postgres"))
	if err != nil {
		b.Fatal(err)
	}
	var sql strings.Builder
	for i := range 300 {
		fmt.Fprintf(&sql, "CREATE TABLE extra%d (id int PRIMARY KEY, body text);", i)
	}
	if _, err := conn.Exec(ctx, sql.String()); err != nil {
		b.Fatal(err)
	}
	conn.Close(ctx)
	out, err := osexec.Command("/usr/lib/postgresql/15/bin/pgbench", "-i", "-q", "-s", "5", src.ConnString("postgres")).CombinedOutput()
	if err != nil {
		b.Fatalf("pgbench -i: %v\n%s", err, out)
	}
	if err := src.Stop(ctx, pgcluster.StopFast); err != nil {
		b.Fatal(err)
	}
	cfg := repo.DefaultConfig(b.TempDir())
	cfg.Redo = pstest.NoRedo{}
	cfg.FlushInterval, cfg.CompactionInterval, cfg.GCInterval = 0, 0, 0
	r, err := repo.Open(cfg)
	if err != nil {
		b.Fatal(err)
	}
	defer func() { r.Close() }()
	tn, err := r.CreateTenant(id.NewTenantID(), repo.DefaultTenantConfig())
	if err != nil {
		b.Fatal(err)
	}
	tl, err := tn.CreateTimeline(id.NewTimelineID(), 0)
	if err != nil {
		b.Fatal(err)
	}
	lsn, err := walingest.ImportDataDir(ctx, tl, src.DataDir(), nil, zerolog.Nop())
	if err != nil {
		b.Fatal(err)
	}
	if err := tl.Flush(ctx); err != nil {
		b.Fatal(err)
	}
	// As after ingest: delta layers above the import's, here 20 of them,
	// each with a size change of pgbench_history; and each basebackup at
	// a new LSN, so the page cache holds none of its sizes at that LSN.
	hist := benchRel(ctx, b, datadir.NewDatadirReader(tl, lsn))
	next := func() pgdata.LSN {
		prev := lsn
		lsn += 0x100
		if err := tl.PutRelSize(hist, pgdata.ForkMain, lsn, uint32(lsn&0xffff)); err != nil {
			b.Fatal(err)
		}
		if err := tl.FinishWrite(lsn, prev); err != nil {
			b.Fatal(err)
		}
		return lsn
	}
	for range 20 {
		next()
		if err := tl.Flush(ctx); err != nil {
			b.Fatal(err)
		}
	}
	b.Run("whole", func(b *testing.B) {
		var sum Timings
		for range b.N {
			var tm Timings
			if err := Basebackup(ctx, tl, next(), io.Discard, Options{Lazy: true, Timings: &tm}); err != nil {
				b.Fatal(err)
			}
			sum.Start += tm.Start
			sum.Files += tm.Files
			sum.Databases += tm.Databases
			sum.Sizes += tm.Sizes
			sum.SLRUs += tm.SLRUs
			sum.End += tm.End
		}
		for _, m := range []struct {
			d    time.Duration
			unit string
		}{{sum.Start, "start-ns/op"}, {sum.Files, "files-ns/op"}, {sum.Databases, "databases-ns/op"}, {sum.Sizes, "sizes-ns/op"}, {sum.SLRUs, "slrus-ns/op"}, {sum.End, "end-ns/op"}} {
			b.ReportMetric(float64(m.d.Nanoseconds())/float64(b.N), m.unit)
		}
	})
	// As after a restart of the page server: the repository reopened
	// (its caches empty; the OS's page cache keeps the files).
	b.Run("reopened", func(b *testing.B) {
		var sizes time.Duration
		for range b.N {
			b.StopTimer()
			if err := r.Close(); err != nil {
				b.Fatal(err)
			}
			if r, err = repo.Open(cfg); err != nil {
				b.Fatal(err)
			}
			tn, err := r.Tenant(tn.ID())
			if err != nil {
				b.Fatal(err)
			}
			if tl, err = tn.Timeline(tl.ID()); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			var tm Timings
			if err := Basebackup(ctx, tl, tl.LastRecordLSN(), io.Discard, Options{Lazy: true, Timings: &tm}); err != nil {
				b.Fatal(err)
			}
			sizes += tm.Sizes
		}
		b.ReportMetric(float64(sizes.Nanoseconds())/float64(b.N), "sizes-ns/op")
	})
	b.Run("sizes", func(b *testing.B) {
		for range b.N {
			n := benchSizes(ctx, b, datadir.NewDatadirReader(tl, next()))
			b.ReportMetric(float64(n), "forks")
		}
	})
}

// benchRel returns a relation of the database whose main fork has the
// most blocks.
func benchRel(ctx context.Context, b *testing.B, r *datadir.DatadirReader) pgdata.RelFileNode {
	dbs, err := r.Databases(ctx)
	if err != nil {
		b.Fatal(err)
	}
	var best pgdata.RelFileNode
	var most uint32
	for _, db := range dbs {
		rels, err := r.Relations(ctx, db)
		if err != nil {
			b.Fatal(err)
		}
		for _, e := range rels {
			rel := pgdata.RelFileNode{SpcNode: db.SpcNode, DbNode: db.DbNode, RelNode: e.RelNode}
			if !e.Forks.Has(pgdata.ForkMain) {
				continue
			}
			if n, err := r.RelSize(ctx, rel, pgdata.ForkMain); err == nil && n >= most {
				best, most = rel, n
			}
		}
	}
	return best
}

// benchSizes reads the size of every relation fork one by one and
// returns how many it read.
func benchSizes(ctx context.Context, b *testing.B, r *datadir.DatadirReader) int {
	dbs, err := r.Databases(ctx)
	if err != nil {
		b.Fatal(err)
	}
	n := 0
	for _, db := range dbs {
		rels, err := r.Relations(ctx, db)
		if err != nil {
			b.Fatal(err)
		}
		for _, e := range rels {
			for f := range pgdata.MaxFork + 1 {
				if !e.Forks.Has(f) {
					continue
				}
				if _, err := r.RelSize(ctx, pgdata.RelFileNode{SpcNode: db.SpcNode, DbNode: db.DbNode, RelNode: e.RelNode}, f); err != nil {
					b.Fatal(err)
				}
				n++
			}
		}
	}
	return n
}
