package pgsuites_test

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
)

// syncRepStall is how long a commit may wait for synchronous replication
// before the suite on the compute is stopped: a page server or safekeepers
// that stopped taking WAL freeze every later commit, and each of the
// suites' thousands of statements would then wait for statementTimeout.
const syncRepStall = 90 * time.Second

// stallWatch stops a suite on a compute whose commits stopped being
// acknowledged, and says why.
type stallWatch struct {
	mu     sync.Mutex
	reason string
}

// watch polls the compute every few seconds until ctx ends; when a
// backend has waited in SyncRep for longer than syncRepStall it records
// the backends and calls stop.
func (w *stallWatch) watch(ctx context.Context, connString string, stop func()) {
	tick := time.NewTicker(5 * time.Second)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-tick.C:
		}
		if r := stalled(ctx, connString); r != "" {
			w.mu.Lock()
			w.reason = r
			w.mu.Unlock()
			stop()
			return
		}
	}
}

// Reason is what the watch saw, "" if nothing stalled.
func (w *stallWatch) Reason() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.reason
}

func stalled(ctx context.Context, connString string) string {
	qctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	conn, err := pgx.Connect(qctx, connString+"?sslmode=disable")
	if err != nil {
		return "" // busy or starting: the suite's own outcome will say
	}
	defer conn.Close(context.Background())
	rows, err := conn.Query(qctx, `
		SELECT datname, pid, (now() - query_start)::text, left(query, 200)
		FROM pg_stat_activity
		WHERE wait_event = 'SyncRep' AND now() - query_start > $1::interval`,
		fmt.Sprintf("%d seconds", int(syncRepStall.Seconds())))
	if err != nil {
		return ""
	}
	var b strings.Builder
	for rows.Next() {
		var db, waited, query string
		var pid int
		if err := rows.Scan(&db, &pid, &waited, &query); err != nil {
			return ""
		}
		fmt.Fprintf(&b, "\n  pid %d in %s waiting %s: %s", pid, db, waited, query)
	}
	if rows.Err() != nil || b.Len() == 0 {
		return ""
	}
	var lsns string
	_ = conn.QueryRow(qctx, `SELECT string_agg(application_name || ' flush ' || coalesce(flush_lsn::text, '-') || ' ' || state, ', ')
		FROM pg_stat_replication`).Scan(&lsns)
	return fmt.Sprintf("commits on the compute have waited for synchronous replication for over %v (current LSN %s; standbys: %s):%s",
		syncRepStall, currentLSN(qctx, conn), lsns, b.String())
}

func currentLSN(ctx context.Context, conn *pgx.Conn) string {
	var lsn string
	if err := conn.QueryRow(ctx, "SELECT pg_current_wal_lsn()::text").Scan(&lsn); err != nil {
		return "?"
	}
	return lsn
}
