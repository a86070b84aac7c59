package walredo

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/zenithdb/zenith/repo/pgcluster"
	"github.com/zenithdb/zenith/repo/pgcluster/pgtest"
	"github.com/zenithdb/zenith/repo/pgcluster/workload"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// BenchmarkRedo measures redo of real heap insert records onto one page
// through a redo process: requests of 1, 10 and 100 records, one at a
// time (the latency a GetPage sees), then 1-record requests from many
// goroutines (pipelined). The 100-record case also reports the marginal
// cost of one heap record inside a request, (t100 - t1) / 99.
//
//	go test ./walredo -run '^$' -bench Redo -benchtime 2000x
func BenchmarkRedo(b *testing.B) {
	tag, recs := heapInsertHistory(b, 101)
	m := openTestManager(b, func(c *Config) { c.ProcessesPerTenant = 2 })
	ctx := context.Background()
	base, err := m.Redo(ctx, tenant, tag, nil, recs[:1]) // the page after its INIT insert
	if err != nil {
		b.Fatal(err)
	}
	perRequest := map[int]float64{}
	for _, n := range []int{1, 10, 100} {
		b.Run(fmt.Sprintf("records=%d", n), func(b *testing.B) {
			batch := recs[1 : 1+n]
			for i := 0; i < b.N; i++ {
				if _, err := m.Redo(ctx, tenant, tag, base, batch); err != nil {
					b.Fatal(err)
				}
			}
			us := float64(b.Elapsed().Nanoseconds()) / 1e3 / float64(b.N)
			perRequest[n] = us
			b.ReportMetric(us, "µs/request")
			b.ReportMetric(us/float64(n), "µs/record")
			if t1, ok := perRequest[1]; ok && n > 1 {
				b.ReportMetric((us-t1)/float64(n-1), "marginal-µs/record")
			}
		})
	}
	b.Run("records=1/pipelined", func(b *testing.B) {
		b.SetParallelism(4)
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := m.Redo(ctx, tenant, tag, base, recs[1:2]); err != nil {
					b.Error(err)
					return
				}
			}
		})
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/1e3/float64(b.N), "µs/request")
	})
}

// heapInsertHistory runs PostgreSQL, inserts n rows one transaction each
// into a fresh table so that they land on its first page, and returns
// that page's tag and its WAL records: an INIT insert, then n-1 inserts.
func heapInsertHistory(b *testing.B, n int) (BufferTag, []Record) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	pg := pgtest.Start(b, workload.Settings())
	conn, err := pgx.Connect(ctx, pg.ConnString("postgres"))
	if err != nil {
		b.Fatal(err)
	}
	var node, db uint32
	var start string
	err = conn.QueryRow(ctx, `SELECT pg_current_wal_insert_lsn()::text,
		(SELECT oid FROM pg_database WHERE datname = current_database())`).Scan(&start, &db)
	if err == nil {
		_, err = conn.Exec(ctx, `CREATE TABLE bench_heap (id int, v text)`)
	}
	if err == nil {
		err = conn.QueryRow(ctx, `SELECT pg_relation_filenode('bench_heap')`).Scan(&node)
	}
	for i := 0; err == nil && i < n; i++ {
		_, err = conn.Exec(ctx, `INSERT INTO bench_heap VALUES ($1, 'a short row')`, i)
	}
	conn.Close(ctx)
	if err != nil {
		b.Fatal(err)
	}
	if err := pg.Stop(ctx, pgcluster.StopFast); err != nil {
		b.Fatal(err)
	}
	startLSN, err := pgdata.ParseLSN(start)
	if err != nil {
		b.Fatal(err)
	}
	tag := BufferTag{Rel: pgdata.RelFileNode{SpcNode: pgdata.DefaultTablespaceOID, DbNode: db, RelNode: node}, Fork: pgdata.ForkMain}
	r, err := pgdata.OpenWAL([]string{filepath.Join(pg.DataDir(), "pg_wal")}, pgdata.WALReadOptions{Start: startLSN})
	if err != nil {
		b.Fatal(err)
	}
	defer r.Close()
	var recs []Record
	for {
		rec, err := r.Next()
		var eow *pgdata.EndOfWALError
		if errors.As(err, &eow) {
			break
		}
		if err != nil {
			b.Fatal(err)
		}
		for _, blk := range rec.Blocks {
			if blk.Rel == tag.Rel && blk.Fork == tag.Fork && blk.Block == tag.Block {
				if rec.Rmgr() != pgdata.RmgrHeap || rec.RmgrInfo()&pgdata.XLogHeapOpMask != pgdata.XLogHeapInsert {
					b.Fatalf("record at %v on the page is %v, not a heap insert", rec.LSN, rec.TypeName())
				}
				recs = append(recs, Record{LSN: rec.EndLSN, WAL: append([]byte(nil), rec.Raw...)})
			}
		}
	}
	if len(recs) != n {
		b.Fatalf("%d records on block 0, want %d", len(recs), n)
	}
	return tag, recs
}
