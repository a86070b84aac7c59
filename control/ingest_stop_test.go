package control_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/zenithdb/zenith/pageserver"
	"github.com/zenithdb/zenith/pageserver/httpapi"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// ingestStopMessage is the prefix of the logical message whose ingest the
// tests make fail (pageserver.FailIngestEnv).
const ingestStopMessage = "zenith-test-ingest-stop"

// ingestStopLog is what the page server logs, once, when ingest stops.
const ingestStopLog = "ingest stopped: WAL is still received and kept"

// timelineInfo fetches the page server's HTTP description of timeline tl
// of tenant.
func (e *skEnv) timelineInfo(t *testing.T, tenant, tl string) httpapi.TimelineInfo {
	t.Helper()
	resp, err := http.Get("http://" + e.cfg.Pageserver.ListenHTTP + "/v1/tenant/" + tenant + "/timeline")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var infos []httpapi.TimelineInfo
	if err := json.NewDecoder(resp.Body).Decode(&infos); err != nil {
		t.Fatalf("GET /v1/tenant/%s/timeline: %v", tenant, err)
	}
	for _, ti := range infos {
		if ti.Timeline.String() == tl {
			return ti
		}
	}
	t.Fatalf("GET /v1/tenant/%s/timeline has no timeline %s", tenant, tl)
	return httpapi.TimelineInfo{}
}

// metrics returns the page server's /metrics text.
func (e *skEnv) metrics(t *testing.T) string {
	t.Helper()
	resp, err := http.Get("http://" + e.cfg.Pageserver.ListenHTTP + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// basebackup runs the page service's basebackup command at lsn and
// returns its error (nil if the whole tar came).
func (e *skEnv) basebackup(tenant, tl string, lsn pgdata.LSN) error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgconn.Connect(ctx, "postgres://zenith@"+e.PageserverAddr+"/zenith?sslmode=disable")
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	_, err = conn.CopyTo(ctx, io.Discard, fmt.Sprintf("basebackup %s %s %s", tenant, tl, lsn))
	return err
}

// metricValue returns the value of the sample named name (labels
// included) in a Prometheus text exposition.
func metricValue(text, name string) (float64, bool) {
	for _, line := range strings.Split(text, "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			f, err := strconv.ParseFloat(strings.TrimSpace(v), 64)
			return f, err == nil
		}
	}
	return 0, false
}

// currentLSN is the compute's WAL insert position.
func currentLSN(t *testing.T, conn *pgx.Conn) pgdata.LSN {
	t.Helper()
	lsn, err := pgdata.ParseLSN(queryString(t, conn, "SELECT pg_current_wal_insert_lsn()::text"))
	if err != nil {
		t.Fatal(err)
	}
	return lsn
}

// nodeOf returns the tenant and timeline of node name from pg list --json.
func (e *skEnv) nodeOf(t *testing.T, name string) (tenant, tl string) {
	t.Helper()
	var rows []struct {
		Name     string `json:"name"`
		Tenant   string `json:"tenant"`
		Timeline string `json:"timeline"`
	}
	if err := json.Unmarshal([]byte(e.Zenith("pg", "list", "--json")), &rows); err != nil {
		t.Fatal(err)
	}
	for _, r := range rows {
		if r.Name == name {
			return r.Tenant, r.Timeline
		}
	}
	t.Fatalf("zenith pg list has no node %s", name)
	return "", ""
}

// TestIngestFailureNeverFreezesCommits makes the page server's ingest fail
// on a record in the middle of a workload (pageserver.FailIngestEnv), with
// the compute streaming to the page server as its synchronous standby:
// commits go on (each bounded by a timeout: before, every commit after the
// record waited forever), zenith status, zenith pg list, the HTTP timeline
// list, the metrics and the log say where and why ingest stopped, a
// basebackup after that point fails at once with the reason while one at
// it works, and zenith pg start of the branch fails with the reason. A
// page server restarted without the failure ingests the stored WAL, and a
// re-created compute has every acknowledged row.
func TestIngestFailureNeverFreezesCommits(t *testing.T) {
	t.Setenv(pageserver.FailIngestEnv, "message:"+ingestStopMessage)
	env := newSKEnv(t, 0)
	testIngestFailure(t, env)
}

// TestIngestFailureWithSafekeepers is TestIngestFailureNeverFreezesCommits
// with three safekeepers: they keep the WAL the page server has not
// ingested, and a restarted page server streams it from them.
func TestIngestFailureWithSafekeepers(t *testing.T) {
	t.Setenv(pageserver.FailIngestEnv, "message:"+ingestStopMessage)
	env := newSKEnv(t, 3)
	testIngestFailure(t, env)
}

func testIngestFailure(t *testing.T, env *skEnv) {
	pg := env.Postgres.CreateStart("main")
	conn := pg.Connect()
	tenant, tl := env.nodeOf(t, "main")
	exec1(t, conn, "CREATE TABLE t (id int PRIMARY KEY, payload text)")
	exec1(t, conn, "INSERT INTO t SELECT g, 'before' FROM generate_series(1, 1000) g")
	exec1(t, conn, "SELECT pg_logical_emit_message(false, $1, 'stop here')", ingestStopMessage)
	// Every commit after the failing record must still be acknowledged.
	for i := 0; i < 20; i++ {
		exec1(t, conn, "INSERT INTO t SELECT g, 'after' FROM generate_series($1::int, $1::int + 99) g", 1001+i*100)
	}
	end := currentLSN(t, conn)

	var stop *httpapi.IngestStop
	deadline := time.Now().Add(time.Minute)
	for stop == nil && time.Now().Before(deadline) {
		stop = env.timelineInfo(t, tenant, tl).IngestStopped
		time.Sleep(100 * time.Millisecond)
	}
	if stop == nil {
		t.Fatalf("the timeline's HTTP description has no ingest_stopped a minute after the failing record")
	}
	if !strings.Contains(stop.Reason, "injected ingest failure") || stop.LSN == 0 || stop.LSN >= end {
		t.Errorf("ingest_stopped = %+v, want the injected failure at an LSN before %v", stop, end)
	}
	want := fmt.Sprintf("stopped at LSN %v", stop.LSN)
	if !strings.Contains(stop.Message, want) {
		t.Errorf("ingest_stopped.message = %q, want it to say %q", stop.Message, want)
	}
	for _, args := range [][]string{{"status"}, {"pg", "list"}} {
		out := env.Zenith(args...)
		if !strings.Contains(out, "branch main of tenant "+tenant) || !strings.Contains(out, want) || !strings.Contains(out, "injected ingest failure") {
			t.Errorf("zenith %s does not say that ingest of main %s:\n%s", strings.Join(args, " "), want, out)
		}
	}
	metrics := env.metrics(t)
	labels := fmt.Sprintf("{tenant_id=%q,timeline_id=%q}", tenant, tl)
	for name, want := range map[string]float64{
		"zenith_pageserver_ingest_stopped" + labels:     1,
		"zenith_pageserver_ingest_stopped_lsn" + labels: float64(stop.LSN),
	} {
		if got, ok := metricValue(metrics, name); !ok || got != want {
			t.Errorf("/metrics: %s = %v (found: %v), want %v", name, got, ok, want)
		}
	}

	// A basebackup after the point fails with the reason, without
	// waiting for the LSN; one at the point works.
	err := env.basebackup(tenant, tl, end)
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != "55000" || !strings.Contains(pgErr.Message, want) {
		t.Errorf("basebackup at %v, after ingest stopped at %v: err = %v, want SQLSTATE 55000 saying %q", end, stop.LSN, err, want)
	}
	if err := env.basebackup(tenant, tl, stop.LSN); err != nil {
		t.Errorf("basebackup at %v, where ingest stopped: %v", stop.LSN, err)
	}
	mustFail(t, env.Env, want, "pg", "start", "main", "--name", "second")
	// So does a branch after the point, or at the branch's end, which is
	// not known (before, the first waited and said the LSN was after the
	// end of main, the second that it was not the end of a record).
	for _, start := range []string{"main@" + end.String(), "main"} {
		mustFail(t, env.Env, "cannot branch at "+start+": "+stop.Message, "branch", "after-stop", start)
	}
	env.Zenith("branch", "at-stop", "main@"+stop.LSN.String())

	// Commits still go on, over several WAL segments.
	for i := 0; i < 3; i++ {
		exec1(t, conn, "SELECT pg_switch_wal()")
		exec1(t, conn, "INSERT INTO t VALUES ($1, 'segment')", 1000000+i)
	}
	// A new connection of the WAL receiver starts after the last record
	// stored, not the last ingested, and commits go on.
	exec1(t, conn, "SELECT pg_terminate_backend(pid) FROM pg_stat_replication")
	exec1(t, conn, "INSERT INTO t VALUES (1000003, 'reconnected')")
	end = currentLSN(t, conn)
	// Safekeepers remove WAL only below what the page server reports
	// durable: that must stay at or below where its ingest stopped.
	for n := 1; n <= env.cfg.Safekeepers.Count; n++ {
		st, err := env.skTimeline(n)
		if err != nil {
			t.Fatal(err)
		}
		if st.PageserverLSN > stop.LSN || st.BeginLSN > stop.LSN {
			t.Errorf("safekeeper %d: page server LSN %v, WAL begins at %v; ingest stopped at %v: WAL the page server has not ingested may go",
				n, st.PageserverLSN, st.BeginLSN, stop.LSN)
		}
	}
	conn.Close(context.Background())

	// Restarted without the failure, the page server ingests the WAL it
	// kept (or the safekeepers kept) and a new compute has every row.
	env.Zenith("stop")
	t.Setenv(pageserver.FailIngestEnv, "")
	env.Zenith("start")
	deadline = time.Now().Add(2 * time.Minute)
	for {
		ti := env.timelineInfo(t, tenant, tl)
		if ti.IngestStopped == nil && ti.LastRecordLSN >= end {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a restart the timeline is at %v (ingest_stopped %+v), want at least %v", ti.LastRecordLSN, ti.IngestStopped, end)
		}
		time.Sleep(100 * time.Millisecond)
	}
	if out := env.Zenith("status"); strings.Contains(out, "stopped at LSN") {
		t.Errorf("zenith status after the restart still says ingest stopped:\n%s", out)
	}
	pg.Destroy()
	pg = env.Postgres.CreateStart("main")
	conn = pg.Connect()
	if got := count(t, conn, "t"); got != 3004 {
		t.Errorf("after the restart a new compute has %d rows, want 3004", got)
	}
	exec1(t, conn, "INSERT INTO t VALUES (2000000, 'again')")

	b, err := os.ReadFile(filepath.Join(env.RepoDir, "pageserver.log"))
	if err != nil {
		t.Fatal(err)
	}
	if n := strings.Count(string(b), ingestStopLog); n != 1 {
		t.Errorf("the page server logged %q %d times, want once", ingestStopLog, n)
	}
}
