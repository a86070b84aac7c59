package control_test

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/zenithdb/zenith/repo/pgdata"
)

// TestRecreateComputeAfterSafekeepersRemovedWAL is how PostgreSQL's test
// suites on a compute with three safekeepers failed: after a few WAL
// segments the safekeepers remove the ones the page server holds, so their
// WAL begins at a segment boundary in the middle of a record; the election
// of the next compute of main then chose that boundary as its start,
// truncated the safekeepers' WAL above it (acknowledged commits included)
// and the basebackup there failed: "LSN is not the end of a WAL record".
// On the way a compute of a branch is started and stopped at once: its
// start must return only once a majority of the safekeepers stream from
// it, so that its shutdown checkpoint reaches them and the page server
// (before, the clean stop waited 30 s and said "the page server is at X,
// before the shutdown checkpoint").
func TestRecreateComputeAfterSafekeepersRemovedWAL(t *testing.T) {
	env := newSKEnv(t, 3)
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	connect := func(connStr string) *pgx.Conn { return connectCleanup(t, ctx, connStr) }
	conn := connect(lastLine(env.Zenith("pg", "start", "main")))
	// Enough WAL for the page server to flush layers (the in-memory ones
	// are bounded), and so for the safekeepers to remove old segments.
	exec1(t, conn, "CREATE TABLE big AS SELECT g, repeat('x', 500) AS pad FROM generate_series(1, 120000) g")
	exec1(t, conn, "CREATE TABLE t (id int)")
	exec1(t, conn, "INSERT INTO t SELECT generate_series(1, 1000)")
	end := currentLSN(t, conn)
	deadline := time.Now().Add(3 * time.Minute)
	for n := 1; n <= 3; n++ {
		for {
			st, err := env.skTimeline(n)
			if err == nil && st.BeginLSN.SegmentOffset(pgdata.WALSegmentSize) == 0 && st.BeginLSN > 0 {
				t.Logf("safekeeper %d: WAL begins at %v, ends at %v", n, st.BeginLSN, st.FlushLSN)
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("safekeeper %d: WAL begins at %v (%v), want the old segments removed", n, st.BeginLSN, err)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}

	env.Zenith("branch", "b", "main")
	b := connect(lastLine(env.Zenith("pg", "start", "b")))
	var streaming int
	if err := b.QueryRow(ctx, "SELECT count(*) FROM pg_stat_replication WHERE application_name LIKE 'safekeeper%' AND state = 'streaming'").Scan(&streaming); err != nil {
		t.Fatal(err)
	}
	if streaming < 2 {
		t.Errorf("right after zenith pg start b, %d safekeepers stream from it, want a majority (2)", streaming)
	}
	b.Close(ctx)
	_, errOut, err := env.Run("pg", "stop", "b", "--destroy")
	if err != nil || strings.Contains(errOut, "before the shutdown checkpoint") {
		t.Errorf("zenith pg stop b --destroy right after its start: %v\n%s", err, errOut)
	}

	conn.Close(ctx)
	env.Zenith("pg", "stop", "main", "--destroy")
	conn = connect(lastLine(env.Zenith("pg", "start", "main")))
	if got := count(t, conn, "t"); got != 1000 {
		t.Errorf("the re-created compute of main has %d rows, want 1000", got)
	}
	if lsn := currentLSN(t, conn); lsn < end {
		t.Errorf("the re-created compute of main starts at %v, before the end %v of the WAL acknowledged", lsn, end)
	}
}

// connectCleanup connects to connStr for the rest of the test: the
// connection is closed when it ends.
func connectCleanup(t *testing.T, ctx context.Context, connStr string) *pgx.Conn {
	t.Helper()
	conn, err := pgx.Connect(ctx, connStr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close(context.Background()) })
	return conn
}
