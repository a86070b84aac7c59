package control

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/zenithdb/zenith/pageserver/api"
	"github.com/zenithdb/zenith/repo/auth"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/safekeeper"
)

// replicaCatchUpTimeout bounds how long a replica's start waits for the
// primary's checkpoint to reach the safekeepers and the page server.
const replicaCatchUpTimeout = 60 * time.Second

// replicaAppPrefix starts the application_name a replica's walreceiver
// connects to its upstream with (then the node's name).
const replicaAppPrefix = "replica_"

// A read replica (Node.Replica) is a stock PostgreSQL hot standby of its
// branch: standby.signal, hot_standby = on, and primary_conninfo naming
// its upstream: every safekeeper (libpq tries them in turn), whose
// walsenders serve the branch's WAL up to the commit LSN; or, in a
// repository without safekeepers, the page server, whose walsender
// serves the branch's WAL from its WAL store up to the end of the last
// complete record it has fsynced (what its compute was told is durable).
// It never writes to the branch.
//
// Where it starts matters. The page server's basebackup at an LSN X puts
// a shutdown checkpoint record of its own at X, which is not the real
// WAL's record there; a standby that read it would go on at its end, in
// the middle of whatever the real WAL holds. So a replica starts where
// the real WAL has a checkpoint it can read:
//
//   - while a primary runs, at a fresh checkpoint of the primary
//     (CHECKPOINT, then pg_control_checkpoint()): the basebackup is taken
//     at its redo point R, and its pg_control is changed to say "shut
//     down in recovery" with the real checkpoint record as the last one
//     and minRecoveryPoint there. The standby streams from the start of
//     R's segment, which overwrites the basebackup's record with the
//     real bytes, reads the real checkpoint record and replays from R on
//     pages as of R (xlogrecovery.c InitWalRecovery; the running-xacts
//     record CreateCheckPoint writes after R gives hot standby its
//     snapshot);
//   - while none runs, at the branch's end L: the next primary starts
//     there too (the election's start is the end of the last record),
//     from a basebackup at L whose checkpoint record has the same
//     length as the replica's, so the real WAL after it is where the
//     replica looks for it.
//
// A new primary (a new term) writes its own shutdown checkpoint record
// at its start, right after the old term's last record: the WAL the
// safekeepers serve stays one history, and the replica follows it.
// Without safekeepers the same holds of the page server's WAL store: a
// new primary starts at the end of the last record it acknowledged (the
// page server cuts off the bytes of a record whose end never came), on
// PostgreSQL timeline 1 as every compute, and its WAL continues the
// store's from there.

// replicaStart is where a replica's data directory is built: the
// basebackup's LSN, and the real checkpoint (0 if none) pg_control must
// point at instead of the basebackup's own.
type replicaStart struct {
	lsn        pgdata.LSN
	checkpoint pgdata.LSN
}

// buildReplica builds a replica's data directory at a point where the
// real WAL has a checkpoint record (see above).
func (e *Env) buildReplica(ctx context.Context, n *Node, eager bool) error {
	start, err := e.findReplicaStart(ctx, n)
	if err != nil {
		return err
	}
	if err := e.buildNode(ctx, n, start.lsn, eager); err != nil {
		return err
	}
	dir := n.DataDir()
	if n.IsLazy() {
		dir = n.lazyBacking()
	}
	if err := makeStandby(dir, n, start.checkpoint); err != nil {
		return fmt.Errorf("compute node %s: %w", n.Name, err)
	}
	return nil
}

// makeStandby finishes a replica's data directory dir: pg_control names
// the real checkpoint ckpt (unless it is 0), and zenith.conf gets the
// primary's values (pg_control's) of the settings a hot standby needs at
// least as high as its primary's (CheckRequiredParameterValues), unless
// the user gave them.
func makeStandby(dir string, n *Node, ckpt pgdata.LSN) error {
	control := filepath.Join(dir, "global", "pg_control")
	b, err := os.ReadFile(control)
	if err != nil {
		return err
	}
	cf, err := pgdata.ParseControlFile(b)
	if err != nil {
		return err
	}
	if ckpt != 0 {
		if err := pointAtCheckpoint(control, cf, ckpt); err != nil {
			return err
		}
	}
	var conf strings.Builder
	for _, kv := range []struct {
		name  string
		value int32
	}{
		{"max_connections", cf.MaxConnections},
		{"max_worker_processes", cf.MaxWorkerProcesses},
		{"max_wal_senders", cf.MaxWALSenders},
		{"max_prepared_transactions", cf.MaxPreparedXacts},
		{"max_locks_per_transaction", cf.MaxLocksPerXact},
	} {
		if _, set := n.Settings[kv.name]; !set && kv.value > 0 {
			fmt.Fprintf(&conf, "%s = %d\n", kv.name, kv.value)
		}
	}
	if conf.Len() == 0 {
		return nil
	}
	// Appended, so the file keeps its owner, the PostgreSQL OS user.
	f, err := os.OpenFile(filepath.Join(dir, computeConfFile), os.O_WRONLY|os.O_APPEND, 0)
	if err != nil {
		return err
	}
	_, err = f.WriteString("# The primary's values (pg_control): a hot standby needs at least these.\n" + conf.String())
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	return err
}

// findReplicaStart finds where a replica of n's branch starts.
func (e *Env) findReplicaStart(ctx context.Context, n *Node) (replicaStart, error) {
	primary, err := e.runningPrimary(ctx, n)
	if err != nil {
		return replicaStart{}, err
	}
	if primary == nil {
		branch, err := e.findBranch(ctx, n.Tenant, n.Branch)
		if err != nil {
			return replicaStart{}, err
		}
		lsn, err := latestLSN(branch)
		if err != nil {
			return replicaStart{}, err
		}
		if e.Config.Safekeepers.Count == 0 {
			return replicaStart{lsn: lsn}, nil
		}
		return replicaStart{lsn: lsn}, e.checkNoWriter(ctx, n, lsn)
	}
	ckpt, redo, flushed, err := checkpointPrimary(ctx, e, primary)
	if err != nil {
		return replicaStart{}, fmt.Errorf("compute node %s: checkpoint its primary %s: %w", n.Name, primary.Name, err)
	}
	// The checkpoint must be committed (the page server ingests only
	// committed WAL), and the page server must have the WAL up to R.
	deadline := time.Now().Add(replicaCatchUpTimeout)
	for {
		b, err := e.findBranch(ctx, n.Tenant, n.Branch)
		if err != nil {
			return replicaStart{}, err
		}
		if b.IngestStopped != "" {
			return replicaStart{}, errIngestStopped(b)
		}
		if b.LastRecordLSN >= flushed {
			break
		}
		if time.Now().After(deadline) {
			return replicaStart{}, fmt.Errorf("compute node %s: the page server is at %s, before the primary's checkpoint at %s, after %v", n.Name, b.LastRecordLSN, flushed, replicaCatchUpTimeout)
		}
		select {
		case <-ctx.Done():
			return replicaStart{}, ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
	}
	// R is where the record after the last one before the checkpoint
	// starts; when that is just after a page header, the record before
	// ends at the page boundary, which is where the basebackup is asked
	// for (it puts its record after the header, at R).
	lsn := redo
	header := uint64(pgdata.XLogShortPageHeaderSize)
	if redo.SegmentOffset(pgdata.WALSegmentSize) < pgdata.XLogBlockSize {
		header = pgdata.XLogLongPageHeaderSize
	}
	if redo.PageOffset() == header {
		lsn = redo - pgdata.LSN(header)
	}
	return replicaStart{lsn: lsn, checkpoint: ckpt}, nil
}

// checkNoWriter fails unless the safekeepers' WAL of n's branch ends
// where the page server's does, at lsn: otherwise a primary this
// repository does not know of (on another host) is writing the branch,
// or the next primary will start further on (the election takes the most
// advanced safekeeper's WAL), and in both cases the record after lsn is
// not the checkpoint record a new primary writes there.
func (e *Env) checkNoWriter(ctx context.Context, n *Node, lsn pgdata.LSN) error {
	client, err := e.cliClient()
	if err != nil {
		return err
	}
	states, err := safekeeper.Greet(ctx, e.safekeeperAddrs(), n.Tenant, n.Timeline, client)
	if err != nil {
		return fmt.Errorf("compute node %s: %w (are the safekeepers running? zenith start starts them)", n.Name, err)
	}
	var end pgdata.LSN
	for _, st := range states {
		if st.Err == nil {
			end = max(end, st.RecordLSN)
		}
	}
	if end > lsn {
		return fmt.Errorf("compute node %s: the safekeepers hold WAL of branch %s up to %s, the page server up to %s, and no primary of it runs here: "+
			"a primary on another host writes the branch (start the replica on its host), or the last one stopped before that WAL was committed "+
			"(zenith pg start %s starts a primary there; then start the replica)", n.Name, n.Branch, end, lsn, n.Branch)
	}
	return nil
}

// upstreamHoldsFrom reports whether a replica of n's branch built at lsn
// can stream from its upstream: every safekeeper that answers still
// holds the branch's WAL from lsn on (its WAL begins at or before lsn,
// or holds none yet); without safekeepers, lsn is at or after the
// branch's GC cut-off, below which alone the page server removes stored
// WAL (it keeps the segment of the LSN it trims at).
func (e *Env) upstreamHoldsFrom(ctx context.Context, n *Node, lsn pgdata.LSN) bool {
	if e.Config.Safekeepers.Count == 0 {
		b, err := e.findBranch(ctx, n.Tenant, n.Branch)
		return err == nil && lsn >= b.GCCutoffLSN
	}
	client, err := e.cliClient()
	if err != nil {
		return false
	}
	states, err := safekeeper.Greet(ctx, e.safekeeperAddrs(), n.Tenant, n.Timeline, client)
	if err != nil {
		return false
	}
	for _, st := range states {
		if st.Err == nil && st.BeginLSN > lsn {
			return false
		}
	}
	return true
}

// runningPrimary returns the running writable node of n's branch, nil if
// there is none.
func (e *Env) runningPrimary(ctx context.Context, n *Node) (*Node, error) {
	nodes, err := e.nodes(&n.Tenant)
	if err != nil {
		return nil, err
	}
	for _, o := range nodes {
		if o.Name == n.Name || o.ReadOnly() || o.Replica || o.Timeline != n.Timeline {
			continue
		}
		if st, err := o.Status(ctx, e); err == nil && st == "running" {
			return o, nil
		}
	}
	return nil, nil
}

// checkpointPrimary makes the primary write a checkpoint and returns its
// record's LSN, its redo LSN and the primary's WAL flush LSN after it.
func checkpointPrimary(ctx context.Context, e *Env, primary *Node) (ckpt, redo, flushed pgdata.LSN, err error) {
	ctx, cancel := context.WithTimeout(ctx, replicaCatchUpTimeout)
	defer cancel()
	conn, err := pgconn.Connect(ctx, primary.ConnString(e)+"?sslmode=disable")
	if err != nil {
		return 0, 0, 0, err
	}
	defer conn.Close(context.Background())
	res, err := conn.Exec(ctx, "CHECKPOINT; SELECT checkpoint_lsn, redo_lsn, pg_current_wal_flush_lsn() FROM pg_control_checkpoint()").ReadAll()
	if err != nil {
		return 0, 0, 0, err
	}
	if len(res) != 2 || len(res[1].Rows) != 1 || len(res[1].Rows[0]) != 3 {
		return 0, 0, 0, errors.New("pg_control_checkpoint: no row")
	}
	row := res[1].Rows[0]
	var lsns [3]pgdata.LSN
	for i := range lsns {
		if lsns[i], err = pgdata.ParseLSN(string(row[i])); err != nil {
			return 0, 0, 0, fmt.Errorf("pg_control_checkpoint: %w", err)
		}
	}
	return lsns[0], lsns[1], lsns[2], nil
}

// pointAtCheckpoint changes cf, the pg_control file at path, a
// basebackup's whose checkpoint record is at the real checkpoint's redo
// LSN, and writes it back, to name the real checkpoint record at ckpt: state "shut down in
// recovery", so that a standby reads the record (streaming it) and
// replays from its redo LSN, consistent from ckpt on.
func pointAtCheckpoint(path string, cf *pgdata.ControlFile, ckpt pgdata.LSN) error {
	if cf.CheckPointCopy.Redo > ckpt {
		return fmt.Errorf("pg_control: the basebackup's checkpoint at %s is after the primary's at %s", cf.CheckPointCopy.Redo, ckpt)
	}
	cf.State = pgdata.DBShutdownedInRecovery
	cf.CheckPoint = ckpt
	cf.MinRecoveryPoint, cf.MinRecoveryPointTLI = ckpt, cf.CheckPointCopy.ThisTimeLineID
	// In place: the file keeps its owner, the PostgreSQL OS user. A
	// torn write only fails the build, which starts over.
	return os.WriteFile(path, cf.Encode(), 0o600)
}

// replicaSettings are a replica's settings instead of a primary's
// synchronous replication ones.
func replicaSettings(n *Node, e *Env) ([][2]string, error) {
	connInfo, err := replicaConnInfo(n, e)
	if err != nil {
		return nil, err
	}
	return [][2]string{
		{"hot_standby", "on"},
		{"primary_conninfo", connInfo},
		// Neither the safekeepers nor the page server pass feedback on
		// to the primary.
		{"hot_standby_feedback", "off"},
		// A lost upstream connection is retried soon.
		{"wal_retrieve_retry_interval", "1s"},
	}, nil
}

// replicaConnInfo is a replica's primary_conninfo: every safekeeper,
// tried in turn by libpq, or without safekeepers the page service,
// naming the timeline in the startup options as their walsenders want.
// With [security] auth it carries a token of the node's tenant only
// (minted at each build of the data directory, in zenith.conf, mode 0600,
// owned by the PostgreSQL OS user); with tls it checks the services'
// certificates against the repository's CA.
func replicaConnInfo(n *Node, e *Env) (string, error) {
	var client auth.ClientOptions
	if e.Config.Security.Auth {
		tok, err := e.issueToken(auth.TenantClaims(n.Tenant), nodeTokenTTL)
		if err != nil {
			return "", err
		}
		client.Token = tok
	}
	if e.Config.Security.TLS {
		client.CAFile = e.TLSPath(auth.CACertFile)
	}
	addrs := e.safekeeperAddrs()
	if len(addrs) == 0 {
		addrs = []string{e.Config.Pageserver.ListenPG}
	}
	hosts, ports := make([]string, len(addrs)), make([]string, len(addrs))
	for i, a := range addrs {
		h, p, err := net.SplitHostPort(a)
		if err != nil {
			h, p = a, ""
		}
		hosts[i], ports[i] = h, p
	}
	return fmt.Sprintf("host=%s port=%s user=replica application_name=%s%s connect_timeout=5 options='%s' %s",
		strings.Join(hosts, ","), strings.Join(ports, ","), replicaAppPrefix, n.Name, api.ReplicationOptions(n.Tenant, n.Timeline), client.ConnParams()), nil
}

// replicaLag returns a running replica's replay LSN and how far it is
// behind the end of the WAL its upstream serves (0 when it is not): the
// branch's commit LSN on the safekeepers, or what the page server
// acknowledged.
func replicaLag(ctx context.Context, e *Env, n *Node) (replay pgdata.LSN, lag uint64, err error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := pgconn.Connect(ctx, n.ConnString(e)+"?sslmode=disable")
	if err != nil {
		return 0, 0, err
	}
	defer conn.Close(context.Background())
	res, err := conn.Exec(ctx, "SELECT pg_last_wal_replay_lsn()").ReadAll()
	if err != nil {
		return 0, 0, err
	}
	if len(res) != 1 || len(res[0].Rows) != 1 || res[0].Rows[0][0] == nil {
		return 0, 0, errors.New("pg_last_wal_replay_lsn: no row")
	}
	if replay, err = pgdata.ParseLSN(string(res[0].Rows[0][0])); err != nil {
		return 0, 0, err
	}
	commit, err := e.upstreamEnd(ctx, n)
	if err != nil {
		return replay, 0, err
	}
	if commit > replay {
		lag = uint64(commit - replay)
	}
	return replay, lag, nil
}

// upstreamEnd is the end of the WAL of n's branch that a replica's
// upstream serves: the highest commit LSN of the safekeepers, or
// without them the page server's acknowledged end.
func (e *Env) upstreamEnd(ctx context.Context, n *Node) (pgdata.LSN, error) {
	if e.Config.Safekeepers.Count == 0 {
		b, err := e.findBranch(ctx, n.Tenant, n.Branch)
		if err != nil {
			return 0, err
		}
		return acknowledgedLSN(b), nil
	}
	client, err := e.cliClient()
	if err != nil {
		return 0, err
	}
	states, err := safekeeper.Greet(ctx, e.safekeeperAddrs(), n.Tenant, n.Timeline, client)
	if err != nil {
		return 0, err
	}
	var commit pgdata.LSN
	for _, st := range states {
		if st.Err == nil {
			commit = max(commit, st.CommitLSN)
		}
	}
	return commit, nil
}
