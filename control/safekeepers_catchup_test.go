package control_test

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
)

// TestSafekeeperCatchUp: a safekeeper that missed an election, and one
// that lost its directory, catch up from their peers on their own and
// count towards the quorum again: with each of them back, another
// safekeeper is killed and commits go on. A re-created compute has every
// acknowledged row.
func TestSafekeeperCatchUp(t *testing.T) {
	env := newSKEnv(t, 3)
	pg := env.Postgres.CreateStart("main")
	conn := pg.Connect()
	exec1(t, conn, "CREATE TABLE t (id int PRIMARY KEY, pad text)")
	rows := 0
	insert := func(conn *pgx.Conn, n int) {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if _, err := conn.Exec(ctx, "INSERT INTO t SELECT g, repeat('x', 500) FROM generate_series($1::int, $2::int) g", rows+1, rows+n); err != nil {
			t.Fatalf("insert rows %d to %d: %v", rows+1, rows+n, err)
		}
		rows += n
	}
	insert(conn, 1000)

	// Safekeeper 1 misses an election: down while the compute is
	// re-created.
	killed, err := env.killSafekeeper(1)
	mustKill(t, "safekeeper 1", killed, err)
	insert(conn, 1000)
	conn.Close(context.Background())
	pg.Destroy()
	pg = env.Postgres.CreateStart("main", "--name", "second")
	conn = pg.Connect()
	insert(conn, 1000)
	env.Zenith("safekeeper", "start", "--id", "1")
	waitJoined(t, env, 1)

	killed, err = env.killSafekeeper(2)
	mustKill(t, "safekeeper 2", killed, err)
	insert(conn, 1000) // safekeepers 1 and 3

	// Safekeeper 2 loses its directory.
	if err := os.RemoveAll(filepath.Join(env.RepoDir, "safekeepers", "sk2")); err != nil {
		t.Fatal(err)
	}
	env.Zenith("safekeeper", "start", "--id", "2")
	waitJoined(t, env, 2)
	killed, err = env.killSafekeeper(3)
	mustKill(t, "safekeeper 3", killed, err)
	insert(conn, 1000) // safekeepers 1 and 2

	conn.Close(context.Background())
	pg.Destroy()
	pg = env.Postgres.CreateStart("main", "--name", "third")
	want := strconv.Itoa(rows) + " " + strconv.Itoa(rows)
	if got := queryString(t, pg.Connect(), "SELECT count(*) || ' ' || max(id) FROM t"); got != want {
		t.Errorf("re-created compute: count and max of t = %q, want %q", got, want)
	}
}

// waitJoined waits until safekeeper n is in the others' term with their
// history's last term, its flush LSN at their highest.
func waitJoined(t *testing.T, env *skEnv, n int) {
	t.Helper()
	deadline := time.Now().Add(2 * time.Minute)
	for {
		var others []string
		ok := true
		st, err := env.skTimeline(n)
		for i := 1; i <= env.cfg.Safekeepers.Count; i++ {
			if i == n {
				continue
			}
			o, oerr := env.skTimeline(i)
			if oerr != nil {
				continue // down
			}
			others = append(others, fmt.Sprintf("safekeeper %d: term %d, history %s, flush %s", i, o.Term, o.History, o.FlushLSN))
			if err != nil || st.Term != o.Term || st.History.LastTerm() != o.Term || st.FlushLSN < o.FlushLSN {
				ok = false
			}
		}
		if ok && err == nil && len(others) > 0 {
			t.Logf("safekeeper %d caught up: term %d, history %s, flush %s", n, st.Term, st.History, st.FlushLSN)
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("safekeeper %d did not catch up in 2 minutes: term %d, history %s, flush %s (err %v); %v", n, st.Term, st.History, st.FlushLSN, err, others)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
