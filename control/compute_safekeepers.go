package control

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/safekeeper"
)

// safekeeperAddrs are the WAL service addresses of the repository's
// safekeepers.
func (e *Env) safekeeperAddrs() []string {
	addrs := make([]string, e.Config.Safekeepers.Count)
	for i := range addrs {
		addrs[i] = e.SafekeeperAddr(i + 1)
	}
	return addrs
}

// syncStandbyNames is synchronous_standby_names for computes with
// safekeepers: a commit waits for a majority of them (each connects with
// application_name safekeeper<N>).
func syncStandbyNames(count int) string {
	names := make([]string, count)
	for i := range names {
		names[i] = fmt.Sprintf("safekeeper%d", i+1)
	}
	return fmt.Sprintf("ANY %d (%s)", count/2+1, strings.Join(names, ", "))
}

// elect runs the safekeepers' election for the node's timeline (DESIGN.md
// section 6) and points the page server at the safekeepers, so that it has
// the WAL up to the elected start LSN before the basebackup there.
func (e *Env) elect(ctx context.Context, n *Node) (safekeeper.Election, error) {
	client, err := e.cliClient()
	if err != nil {
		return safekeeper.Election{}, err
	}
	el, err := safekeeper.Elect(ctx, e.safekeeperAddrs(), n.Tenant, n.Timeline, client, zerolog.Nop())
	if err != nil {
		return el, fmt.Errorf("compute node %s: safekeeper election: %w (are the safekeepers running? zenith start starts them)", n.Name, err)
	}
	if err := e.Pageserver().Safekeepers(ctx, n.Tenant, n.Timeline, e.safekeeperAddrs()); err != nil {
		return el, fmt.Errorf("compute node %s: point the page server at the safekeepers: %w", n.Name, err)
	}
	return el, nil
}

// assignCompute tells the safekeepers that joined the election to stream
// from the node as the compute of the elected term, starting at start (the
// basebackup's LSN, which must be the term's start); a majority must
// accept. Election.SetCompute does it, with its checks.
//
// It then waits until a majority of them stream from the node: before
// that the node can commit nothing (each commit waits for a quorum), and
// a node stopped before any of them connected would take its last WAL,
// the shutdown checkpoint, with it, so that the page server never reaches
// it (the clean stop then waited stopCatchUpTimeout in vain).
func (e *Env) assignCompute(ctx context.Context, n *Node, el safekeeper.Election, start pgdata.LSN) error {
	if err := el.SetCompute(ctx, n.ConnString(e), start); err != nil {
		return fmt.Errorf("compute node %s: %w", n.Name, err)
	}
	return e.waitStreaming(ctx, n, "safekeeper%", e.Config.Safekeepers.Count/2+1, "the safekeepers")
}

// waitStreaming waits until at least want walreceivers whose
// application_name is LIKE app stream from the node (pg_stat_replication),
// for at most streamConnectTimeout; who names them in the error. It asks
// every streamPollInterval over one connection (a new one only after a
// failure): the walreceiver connects within milliseconds of being told
// to, and the start waits for it. A server that is gone ends the wait at
// once (Start does not try a connection for a writable node: this is
// its first).
func (e *Env) waitStreaming(ctx context.Context, n *Node, app string, want int, who string) error {
	deadline := time.Now().Add(streamConnectTimeout)
	phases := newPhaseTimer(e.Log.With().Str("op", "wait for "+app).Str("node", n.Name).Logger())
	var conn *pgconn.PgConn
	defer func() {
		if conn != nil {
			conn.Close(context.Background())
		}
	}()
	for {
		var got int
		var err error
		if conn == nil {
			if conn, err = connectCompute(ctx, n.ConnString(e)); err == nil {
				phases.done("connected")
			}
		}
		if err == nil {
			if got, err = countStreaming(ctx, conn, app); err != nil {
				conn.Close(context.Background())
				conn = nil
			}
		}
		if err == nil && got >= want {
			phases.done("streaming")
			return nil
		}
		if err != nil && postmasterPID(filepath.Join(n.DataDir(), "postmaster.pid")) == 0 {
			return fmt.Errorf("compute node %s: PostgreSQL is not running (%w); %s says why", n.Name, err, n.LogFile())
		}
		if time.Now().After(deadline) {
			if err == nil {
				err = fmt.Errorf("%d of the %d needed are streaming", got, want)
			}
			return fmt.Errorf("compute node %s: %s did not start streaming from it within %v (%w); "+
				"can they reach it? (their logs say; config.toml [compute] replication_from lists the networks it trusts)", n.Name, who, streamConnectTimeout, err)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(streamPollInterval):
		}
	}
}

// Waits for a compute's walreceivers.
const (
	// streamConnectTimeout bounds how long a compute start waits for a
	// majority of the safekeepers, or the page server, to stream from
	// the new compute.
	streamConnectTimeout = 60 * time.Second
	// streamPollInterval is how often it looks.
	streamPollInterval = 5 * time.Millisecond
	// streamQueryTimeout bounds one connection or query of the wait.
	streamQueryTimeout = 5 * time.Second
)

// connectCompute connects to the compute at connStr for the control
// plane's own queries, within streamQueryTimeout.
func connectCompute(ctx context.Context, connStr string) (*pgconn.PgConn, error) {
	ctx, cancel := context.WithTimeout(ctx, streamQueryTimeout)
	defer cancel()
	return pgconn.Connect(ctx, connStr+"?sslmode=disable")
}

// streamingQuery counts the walsenders streaming to an application_name
// LIKE $1: what pg_stat_replication shows, from the two functions under
// it, since on a lazy compute the view's rewrite and its join with
// pg_authid read catalog blocks through FUSE (tens of milliseconds on
// the start's path) that the functions do not need.
const streamingQuery = `SELECT count(*) FROM pg_stat_get_wal_senders() w, pg_stat_get_activity(w.pid) a
	WHERE a.application_name LIKE $1 AND w.state = 'streaming'`

// countStreaming counts the walreceivers that stream from the compute
// conn is connected to whose application_name is LIKE app
// (pg_stat_replication).
func countStreaming(ctx context.Context, conn *pgconn.PgConn, app string) (int, error) {
	ctx, cancel := context.WithTimeout(ctx, streamQueryTimeout)
	defer cancel()
	res := conn.ExecParams(ctx, streamingQuery,
		[][]byte{[]byte(app)}, nil, nil, nil).Read()
	if res.Err != nil {
		return 0, res.Err
	}
	if len(res.Rows) != 1 {
		return 0, errors.New("pg_stat_replication: no row")
	}
	return strconv.Atoi(string(res.Rows[0][0]))
}
