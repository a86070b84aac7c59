package control_test

import (
	"context"
	"fmt"
	"testing"
)

// A node started on a branch holds every transaction committed on it
// before, without safekeepers: the page server acknowledges a commit once
// it has stored its WAL, and may not have ingested it when the next node
// starts (its writer was stopped with --immediate, or the page server was
// restarted and replays its stored WAL). Each round commits a large
// transaction, stops its node at once and starts the next, which must
// count every row; every other round restarts the page server between.
func TestStartHoldsEveryAcknowledgedCommit(t *testing.T) {
	env := newSKEnv(t, 0)
	ctx := context.Background()
	pg := env.Postgres.CreateStart("main")
	conn := pg.Connect()
	exec1(t, conn, "CREATE TABLE t (id int, pad text)")
	want := 0
	for i := range 4 {
		exec1(t, conn, "INSERT INTO t SELECT g, repeat('x', 100) FROM generate_series(1, 20000) g")
		want += 20000
		env.Zenith("pg", "stop", pg.Name, "--immediate")
		if i%2 == 1 {
			env.Zenith("pageserver", "stop", "--immediate")
			env.Zenith("pageserver", "start")
		}
		pg = env.Postgres.CreateStart("main", "--name", fmt.Sprintf("n%d", i))
		conn = pg.Connect()
		var got int
		if err := conn.QueryRow(ctx, "SELECT count(*) FROM t").Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != want {
			t.Fatalf("round %d: node %s counts %d rows, want every acknowledged one, %d", i, pg.Name, got, want)
		}
	}
}
