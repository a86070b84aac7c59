package control_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/zenithdb/zenith/repo/pgdata"
)

// A branch of a branch's latest state holds every transaction committed
// on it before: a commit is acknowledged once the page server has stored
// its WAL, which it may not have ingested yet, so the branch point must be
// where the acknowledged WAL ends, not where ingest happens to be. Each
// round commits a large transaction and branches at once.
func TestBranchHoldsEveryAcknowledgedCommit(t *testing.T) {
	for _, sk := range []int{0, 3} {
		t.Run(fmt.Sprintf("safekeepers=%d", sk), func(t *testing.T) { testBranchHoldsEveryAcknowledgedCommit(t, sk) })
	}
}

func testBranchHoldsEveryAcknowledgedCommit(t *testing.T, safekeepers int) {
	env := newSKEnv(t, safekeepers)
	conn := env.Postgres.CreateStart("main").Connect()
	exec1(t, conn, "CREATE TABLE t (id int, pad text)")
	for i := range 4 {
		ctx := context.Background()
		tx, err := conn.Begin(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := tx.Exec(ctx, "INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g"); err != nil {
			t.Fatal(err)
		}
		var before string
		if err := tx.QueryRow(ctx, "SELECT pg_current_wal_insert_lsn()::text").Scan(&before); err != nil {
			t.Fatal(err)
		}
		if err := tx.Commit(ctx); err != nil {
			t.Fatal(err)
		}
		name := fmt.Sprintf("b%d", i)
		env.Zenith("branch", name, "main")
		at := branch(t, env, name).AncestorLSN
		beforeLSN, err := pgdata.ParseLSN(before)
		if err != nil {
			t.Fatal(err)
		}
		if pgdata.LSN(at) < beforeLSN {
			t.Fatalf("round %d: branch %s starts at %s, before the acknowledged commit (its records end after %s)", i, name, at, before)
		}
	}
}
