package workload_test

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/zenithdb/zenith/repo/pgcluster"
	"github.com/zenithdb/zenith/repo/pgcluster/pgtest"
	"github.com/zenithdb/zenith/repo/pgcluster/pgwaldump"
	"github.com/zenithdb/zenith/repo/pgcluster/workload"
)

// TestMixedWritesWhatItPromises runs the mixed workload at scale 1 and
// reads its WAL back with pg_waldump: at least 100,000 records, and every
// record type each step promises within that step's LSN range.
func TestMixedWritesWhatItPromises(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	c := pgtest.Start(t, workload.Settings())
	rep, err := workload.Run(ctx, c.ConnString("postgres"), workload.Options{Seed: 1})
	if err != nil {
		t.Fatalf("workload: %v", err)
	}
	if err := c.Stop(ctx, pgcluster.StopFast); err != nil {
		t.Fatal(err)
	}
	first, last := rep.Steps[0], rep.Steps[len(rep.Steps)-1]
	res, err := pgwaldump.Run(ctx, pgwaldump.Options{
		BinDir: c.BinDir(), WALDir: filepath.Join(c.DataDir(), "pg_wal"), Start: first.Start,
	})
	if err != nil {
		t.Fatal(err)
	}
	if res.FirstRecord != 0 {
		t.Errorf("the first step's start %v is not a record boundary (first record at %v)", first.Start, res.FirstRecord)
	}
	var inWorkload int
	for _, r := range res.Records {
		if r.LSN < last.End {
			inWorkload++
		}
	}
	if inWorkload < 100_000 {
		t.Errorf("workload wrote %d WAL records, want >= 100000", inWorkload)
	}
	t.Logf("workload wrote %d records from %v to %v", inWorkload, first.Start, last.End)

	for _, step := range rep.Steps {
		seen := map[string]int{}
		for _, r := range res.Records {
			if r.LSN >= step.Start && r.LSN < step.End {
				seen[r.Rmgr+"/"+recordType(r.Desc)]++
			}
		}
		for _, want := range step.Records {
			if seen[want] == 0 {
				t.Errorf("step %s (%v..%v) wrote no %s record; it wrote: %s", step.Name, step.Start, step.End, want, summary(seen))
			}
		}
	}
}

// recordType is the record type at the start of pg_waldump's description.
func recordType(desc string) string {
	typ, _, _ := strings.Cut(desc, " ")
	return typ
}

func summary(seen map[string]int) string {
	var parts []string
	for k, n := range seen {
		parts = append(parts, fmt.Sprintf("%s×%d", k, n))
	}
	sort.Strings(parts)
	return strings.Join(parts, " ")
}

// TestMixedIsDeterministic: the same seed gives the same data in every
// table, another seed different data.
func TestMixedIsDeterministic(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	run := func(seed int64) map[string]string {
		c := pgtest.Start(t, workload.Settings())
		if _, err := workload.Run(ctx, c.ConnString("postgres"), workload.Options{Seed: seed, Scale: 0.1}); err != nil {
			t.Fatalf("workload (seed %d): %v", seed, err)
		}
		sums := tableChecksums(ctx, t, c.ConnString("postgres"))
		if err := c.Stop(ctx, pgcluster.StopFast); err != nil {
			t.Fatal(err)
		}
		return sums
	}
	a, b, other := run(7), run(7), run(8)
	if len(a) < 10 {
		t.Fatalf("only %d workload tables: %v", len(a), a)
	}
	for table, sum := range a {
		if b[table] != sum {
			t.Errorf("seed 7 twice: table %s differs (%s vs %s)", table, sum, b[table])
		}
	}
	var differ int
	for table, sum := range a {
		if other[table] != sum {
			differ++
		}
	}
	if differ == 0 {
		t.Errorf("seeds 7 and 8 gave the same data in every table")
	}
}

// tableChecksums returns an md5 of the ordered contents of every wl_ table.
func tableChecksums(ctx context.Context, t *testing.T, connString string) map[string]string {
	t.Helper()
	conn, err := pgx.Connect(ctx, connString)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT relname FROM pg_class WHERE relname LIKE 'wl\_%' AND relkind = 'r' ORDER BY 1`)
	if err != nil {
		t.Fatal(err)
	}
	tables, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	sums := map[string]string{}
	for _, table := range tables {
		var sum string
		q := fmt.Sprintf(`SELECT md5(coalesce(string_agg(t::text, ',' ORDER BY t::text), '')) FROM %s t`, table)
		if err := conn.QueryRow(ctx, q).Scan(&sum); err != nil {
			t.Fatalf("checksum %s: %v", table, err)
		}
		sums[table] = sum
	}
	return sums
}
