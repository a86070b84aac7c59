package walredo

import (
	"context"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/zenithdb/zenith/repo/pgcluster"
	"github.com/zenithdb/zenith/repo/pgcluster/pgtest"
	"github.com/zenithdb/zenith/repo/pgcluster/workload"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// TestInitForkAndGenericRedo rebuilds, from a real PostgreSQL's WAL, every
// page of the init forks of unlogged relations of each kind that writes
// one (every index access method, contrib's bloom, a sequence), and every
// page of a bloom index of a logged table (generic WAL), and compares them
// with the real pages after rm_mask. Init-fork pages failed before they
// were redone in the scratch relation's main fork ("xlog flush request ...
// is not satisfied": PostgreSQL flushes init-fork buffers at once).
func TestInitForkAndGenericRedo(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	pg := pgtest.New(t, workload.Settings())
	ctrl := readControlFile(t, pg.DataDir())
	if err := pg.Start(ctx); err != nil {
		t.Fatal(err)
	}
	dbOID := createOracleDB(ctx, t, pg)
	conn, err := pgx.Connect(ctx, pg.ConnString(oracleDB))
	if err != nil {
		t.Fatal(err)
	}
	for _, sql := range []string{
		"CREATE EXTENSION bloom",
		"CREATE UNLOGGED TABLE u (i int PRIMARY KEY, p point, r int4range, a int[], t text)",
		"CREATE INDEX ON u USING hash (i)",
		"CREATE INDEX ON u USING gist (p)",
		"CREATE INDEX ON u USING spgist (r)",
		"CREATE INDEX ON u USING gin (a)",
		"CREATE INDEX ON u USING brin (i)",
		"CREATE INDEX ON u USING bloom (i)",
		"CREATE UNLOGGED SEQUENCE useq",
		"CREATE TABLE logged (i int, t text)",
		"CREATE INDEX logged_bloom ON logged USING bloom (i, t)",
		"INSERT INTO u SELECT g, point(g, g), int4range(g, g + 1), ARRAY[g], 'x' FROM generate_series(1, 2000) g",
		"INSERT INTO logged SELECT g, 'row ' || g FROM generate_series(1, 20000) g",
		"DELETE FROM logged WHERE i % 3 = 0",
		"VACUUM logged",
	} {
		if _, err := conn.Exec(ctx, sql); err != nil {
			t.Fatalf("%s: %v", sql, err)
		}
	}
	rels := readRelations(ctx, t, pg.ConnString(oracleDB))
	conn.Close(ctx)
	if err := pg.Stop(ctx, pgcluster.StopFast); err != nil {
		t.Fatal(err)
	}

	h := readHistory(t, pg.DataDir()+"/pg_wal", ctrl.CheckPoint, dbOID)
	all, files := relationPages(t, pg.DataDir(), dbOID, rels)
	var jobs []pageJob
	for _, j := range all {
		if j.tag.Fork == pgdata.ForkInit || (j.rel.am == "bloom" && j.tag.Fork == pgdata.ForkMain) {
			jobs = append(jobs, j)
		}
	}
	m := openTestManager(t, nil)
	tally, replayed := checkPages(ctx, t, m, jobs, files, h)
	for _, want := range []string{"Btree", "Hash", "Gin", "Gist", "SPGist", "BRIN", "Sequence", "Generic"} {
		if tally["equal "+want] == 0 {
			t.Errorf("no %s page was compared equal", want)
		}
	}
	for _, want := range []string{"Generic/Generic", "XLOG/FPI", "Sequence/LOG"} {
		if replayed[want] == 0 {
			t.Errorf("no %s was replayed into a page found equal", want)
		}
	}
}
