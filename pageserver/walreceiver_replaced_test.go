package pageserver

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/zenithdb/zenith/pageserver/api"
	"github.com/zenithdb/zenith/pageserver/httpapi"
	"github.com/zenithdb/zenith/pageserver/walreceiver"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/pgcluster"
)

// TestWalReceiverComputeReplaced replaces main's compute as the control
// plane does after `pg stop --immediate`: a compute streaming to the page
// server (callmemaybe, synchronous standby) dies in the middle of a large
// transaction, so the WAL store ends inside a record the compute never
// finished; a new compute starts from a basebackup at the page server's
// last record end, where its WAL differs from the dead one's. Its
// commits must succeed and be ingested, with every row committed before
// back. A partial record depends on where the dead compute's last flush
// fell, so rounds are repeated until one left it.
func TestWalReceiverComputeReplaced(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	ts := startPageServer(t)
	conn := ts.connect(t)
	tenant := createImportedTenant(t, conn)
	settings := map[string]string{
		"synchronous_standby_names": walreceiver.ReplicationSlot,
		"synchronous_commit":        "on",
		"wal_level":                 "replica",
	}
	const maxRounds = 5
	committed, partial := int64(0), false
	for round := 1; ; round++ {
		compute := startFromBasebackup(t, conn, fmt.Sprintf("basebackup %s main", tenant), settings)
		callMeMaybe(ctx, t, conn, tenant, compute)
		c := connect(t, compute, "postgres")
		if round == 1 {
			commitWithin(t, ts, tenant, c, "CREATE TABLE items (round int, n int)")
		}
		// Each commit waits for the page server to flush it.
		commitWithin(t, ts, tenant, c, fmt.Sprintf("INSERT INTO items SELECT %d, generate_series(1, 100)", round))
		committed += 100
		wantRows(t, c, "SELECT count(*) FROM items", committed)
		last := waitIngested(t, conn, tenant, c)
		t.Logf("round %d: %d rows committed and ingested to %v", round, committed, last)
		c.Close(ctx)
		if partial || t.Failed() {
			break
		}
		if round == maxRounds {
			t.Fatalf("in %d rounds no compute died inside a record; the case was not tested", maxRounds)
		}
		partial = killMidTransaction(ctx, t, ts, tenant, compute)
	}
}

// killMidTransaction runs a transaction too large to finish on compute,
// stops the compute with an immediate shutdown once the page server has
// received a megabyte of its WAL, and waits for the receiver to see the
// connection end. It reports whether the WAL store then ends past the
// last record ingested: inside the record the compute was writing.
func killMidTransaction(ctx context.Context, t *testing.T, ts *testPageServer, tenant id.TenantID, compute *pgcluster.Cluster) bool {
	t.Helper()
	c := connect(t, compute, "postgres")
	defer c.Close(context.Background())
	from := mainWAL(t, ts, tenant).Received
	done := make(chan error, 1)
	go func() {
		_, err := c.Exec(ctx, "INSERT INTO items SELECT -1, generate_series(1, 50000000)")
		done <- err
	}()
	status := func() *api.WALStatus { return mainWAL(t, ts, tenant) }
	waitFor(t, "a megabyte into the large transaction", status, func(st *api.WALStatus) bool { return st.Received >= from+1<<20 })
	if err := compute.Stop(ctx, pgcluster.StopImmediate); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err == nil {
		t.Fatal("the large transaction committed; it was to be cut short")
	}
	st := waitFor(t, "disconnected from the stopped compute", status, func(st *api.WALStatus) bool { return !st.Connected })
	t.Logf("compute stopped: WAL store ends at %v, last record ingested ends at %v", st.Received, st.Ingested)
	return st.Received > st.Ingested
}

// mainWAL returns the WAL receiver status of the tenant's main branch,
// read over HTTP.
func mainWAL(t *testing.T, ts *testPageServer, tenant id.TenantID) *api.WALStatus {
	t.Helper()
	var timelines []httpapi.TimelineInfo
	httpJSON(t, "GET", "http://"+ts.httpAddr+"/v1/tenant/"+tenant.String()+"/timeline", "", http.StatusOK, &timelines)
	for _, tl := range timelines {
		if tl.Branch == "main" && tl.WALReceiver != nil {
			return tl.WALReceiver
		}
	}
	t.Fatalf("no WAL receiver on main in %+v", timelines)
	return nil
}

// commitWithin runs sql on a compute whose synchronous standby is the
// page server, failing the test if it has not returned in 30 s: a commit
// waiting for a page server that stopped ingesting would hang.
func commitWithin(t *testing.T, ts *testPageServer, tenant id.TenantID, conn *pgx.Conn, sql string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := conn.Exec(ctx, sql); err != nil {
		t.Fatalf("%s: %v (WAL receiver: %+v)", sql, err, mainWAL(t, ts, tenant))
	}
}
