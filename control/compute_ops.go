package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/zenithdb/zenith/pageserver/api"
	"github.com/zenithdb/zenith/pgwire"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/netport"
	"github.com/zenithdb/zenith/repo/pgcluster"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/tarfile"
	"github.com/zenithdb/zenith/safekeeper"
)

// Waits of compute management.
const (
	// stopCatchUpTimeout bounds how long a clean stop waits for the page
	// server to have the compute's last record (its shutdown checkpoint).
	stopCatchUpTimeout = 30 * time.Second
	// computeStopTimeout bounds a compute's fast shutdown.
	computeStopTimeout = 60 * time.Second
)

// NodeOptions describe a new compute node (zenith pg create).
type NodeOptions struct {
	Tenant id.TenantID
	Branch string
	// Name is the node's name; empty means the branch's.
	Name string
	// Port is its TCP port (on compute.listen_addresses); 0 picks a free one.
	Port int
	// LSN makes a read-only node at that LSN of the branch; 0 follows the
	// branch.
	LSN      pgdata.LSN
	Settings map[string]string
	// Eager copies every relation file into the data directory instead
	// of serving them lazily through FUSE.
	Eager bool
	// Replica makes a read replica: a hot standby following the branch
	// (compute_replica.go).
	Replica bool
}

// findBranch returns tenant t's branch name, without its sizes, or an
// error that lists the branches there are.
func (e *Env) findBranch(ctx context.Context, t id.TenantID, name string) (api.BranchInfo, error) {
	b, err := e.Pageserver().Branch(ctx, t, name)
	var pe *PageserverError
	if (err == nil && b.Name == name) || (err != nil && !errors.As(err, &pe)) {
		return b, err
	}
	// No such branch or tenant (or a page server that only lists them
	// all): the list, with its error, says what there is.
	branches, err := e.Pageserver().BranchList(ctx, t)
	if err != nil {
		return api.BranchInfo{}, explainTenant(err, t)
	}
	names := make([]string, 0, len(branches))
	for _, b := range branches {
		if b.Name == name {
			return b, nil
		}
		names = append(names, b.Name)
	}
	return api.BranchInfo{}, fmt.Errorf("unknown branch %q in tenant %s (branches: %s); zenith branch NAME creates one", name, t, strings.Join(names, ", "))
}

// explainTenant turns the page server's "unknown tenant" into advice.
func explainTenant(err error, t id.TenantID) error {
	var pe *PageserverError
	if errors.As(err, &pe) && pe.Code == pgwire.CodeUndefinedObject {
		return fmt.Errorf("%w (zenith tenant list shows the tenants; is tenant %s on this page server?)", err, t)
	}
	return err
}

// CreateNode creates a compute node and builds its data directory. On
// failure nothing of it is left.
func (e *Env) CreateNode(ctx context.Context, o NodeOptions) (_ *Node, err error) {
	if o.Name == "" {
		o.Name = o.Branch
	}
	if err := api.CheckName("node", o.Name); err != nil {
		return nil, err
	}
	if o.Replica {
		if o.LSN != 0 {
			return nil, errors.New("--replica follows the branch and --lsn stays at one LSN: give one of them")
		}
	}
	dir := filepath.Join(e.TenantNodesDir(o.Tenant), o.Name)
	if _, err := os.Stat(dir); err == nil {
		return nil, fmt.Errorf("compute node %q exists already in tenant %s: choose another with --name, or remove it with zenith pg stop %s --destroy", o.Name, o.Tenant, o.Name)
	}
	phases := newPhaseTimer(e.Log.With().Str("op", "pg create").Str("node", o.Name).Logger())
	branch, err := e.findBranch(ctx, o.Tenant, o.Branch)
	if err != nil {
		return nil, err
	}
	phases.done("branch")
	if o.LSN != 0 && o.LSN > branch.LastRecordLSN {
		return nil, fmt.Errorf("LSN %s is after the end of branch %s (its last record ends at %s): give an LSN at or before that", o.LSN, o.Branch, branch.LastRecordLSN)
	}
	if o.Port, err = e.choosePort(o.Port); err != nil {
		return nil, err
	}
	phases.done("port")
	n := &Node{
		Name: o.Name, Tenant: o.Tenant, Branch: o.Branch, Timeline: branch.Timeline,
		Port: o.Port, ReadOnlyLSN: o.LSN, Replica: o.Replica, Settings: o.Settings, dir: dir,
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create compute node: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	if n.Replica {
		if err := e.buildReplica(ctx, n, o.Eager); err != nil {
			return nil, err
		}
		return n, nil
	}
	lsn := o.LSN
	if lsn == 0 {
		if lsn, err = latestLSN(branch); err != nil {
			return nil, err
		}
	}
	if err := e.buildNode(ctx, n, lsn, o.Eager); err != nil {
		return nil, err
	}
	phases.done("data directory")
	return n, nil
}

// buildNode builds the node's data directory lazily where FUSE can be
// mounted, unless eager, and eagerly otherwise, saying why in one line.
func (e *Env) buildNode(ctx context.Context, n *Node, lsn pgdata.LSN, eager bool) error {
	if !eager {
		why := e.lazyUnavailable()
		if why == "" {
			err := e.buildDataDir(ctx, n, lsn, true)
			if !errors.Is(err, errLazyTablespaces) {
				return err
			}
			why = err.Error()
		}
		fmt.Fprintf(e.Progress, "compute node %s: eager mode (a full copy of the data): %s\n", n.Name, why)
	}
	return e.buildDataDir(ctx, n, lsn, false)
}

// choosePort checks that port is free and not another node's, or picks a
// free one when port is 0.
func (e *Env) choosePort(port int) (int, error) {
	nodes, err := e.nodes(nil)
	if err != nil {
		return 0, err
	}
	taken := map[int]string{}
	for _, n := range nodes {
		taken[n.Port] = n.Name
	}
	if port != 0 {
		if port < 1 || port > 65535 {
			return 0, fmt.Errorf("--port %d: want 1 to 65535", port)
		}
		if name, ok := taken[port]; ok {
			return 0, fmt.Errorf("port %d is already compute node %s's: choose another --port", port, name)
		}
		return port, e.checkComputePortFree(port)
	}
	for i := 0; i < 20; i++ {
		p, err := netport.Pick("127.0.0.1", 1)
		if err != nil {
			return 0, fmt.Errorf("%w: give one with --port", err)
		}
		if _, ok := taken[p]; !ok && e.checkComputePortFree(p) == nil {
			return p, nil
		}
	}
	return 0, errors.New("could not find a free port: give one with --port")
}

// checkAddrFree fails if something listens on addr (host:port).
func checkAddrFree(addr string) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		host, port, _ := net.SplitHostPort(addr)
		return fmt.Errorf("port %s is in use by another program, or %s is not an address of this host: choose another port, or stop that program (%v)", port, host, err)
	}
	return l.Close()
}

// checkComputePortFree fails if a compute could not listen on port of
// every host of compute.listen_addresses.
func (e *Env) checkComputePortFree(port int) error {
	for _, h := range e.Config.Compute.ListenHosts() {
		if h == "*" {
			h = ""
		}
		if err := checkAddrFree(net.JoinHostPort(h, strconv.Itoa(port))); err != nil {
			return err
		}
	}
	return nil
}

// acknowledgedLSN is where a node that follows branch starts: its last
// record, or, if the page server acknowledged WAL it has not ingested yet
// (it may be catching up after a crash or a restart), the end of that
// WAL, so the node holds every acknowledged commit. The basebackup there
// waits for ingest to reach it: no wait here. With safekeepers, a
// writable node starts where their election says instead (StartNode).
func acknowledgedLSN(branch api.BranchInfo) pgdata.LSN {
	return max(branch.LastRecordLSN, branch.AcknowledgedLSN)
}

// latestLSN is acknowledgedLSN, or an error if the branch's ingest
// stopped: its latest state is not known then.
func latestLSN(branch api.BranchInfo) (pgdata.LSN, error) {
	if branch.IngestStopped != "" {
		return 0, errIngestStopped(branch)
	}
	return acknowledgedLSN(branch), nil
}

// buildDataDir replaces the node's data directory with a basebackup of its
// timeline at lsn and zenith's configuration, owned by the PostgreSQL OS
// user: a copy of every file (eager), or a lazy one whose relation files
// a FUSE server fills at run time (see compute_lazy.go).
func (e *Env) buildDataDir(ctx context.Context, n *Node, lsn pgdata.LSN, lazy bool) (err error) {
	data, tablespaces := n.DataDir(), n.TablespacesDir()
	if isMounted(data) {
		return fmt.Errorf("compute node %s: its data directory is still mounted: zenith pg stop %s unmounts it", n.Name, n.Name)
	}
	for _, d := range []string{data, tablespaces, n.lazyDir()} {
		if err := os.RemoveAll(d); err != nil {
			return fmt.Errorf("remove old data directory: %w", err)
		}
	}
	if err := os.Mkdir(data, 0o700); err != nil {
		return fmt.Errorf("create data directory: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(data)
			os.RemoveAll(tablespaces)
			os.RemoveAll(n.lazyDir())
		}
	}()
	n.Mode, n.Fresh = ModeEager, false
	if lazy {
		err = e.buildLazyDataDir(ctx, n, lsn)
	} else {
		err = e.buildEagerDataDir(ctx, n, lsn)
	}
	if err != nil {
		return err
	}
	n.BasebackupLSN, n.CleanLSN, n.Fresh = lsn, lsn, true
	return n.save()
}

// buildEagerDataDir unpacks a full basebackup into the data directory.
func (e *Env) buildEagerDataDir(ctx context.Context, n *Node, lsn pgdata.LSN) error {
	data := n.DataDir()
	if err := e.extractBasebackup(ctx, n, lsn, false, data); err != nil {
		return err
	}
	if err := writeComputeConfig(n, e, data); err != nil {
		return err
	}
	user, err := pgcluster.ServerUser()
	if err != nil {
		return err
	}
	if err := pgcluster.PrepareDir(data, user); err != nil {
		return err
	}
	if _, err := os.Stat(n.TablespacesDir()); err == nil {
		if err := pgcluster.PrepareDir(n.TablespacesDir(), user); err != nil {
			return err
		}
	}
	n.Mode = ModeEager
	return nil
}

// extractBasebackup unpacks the page server's basebackup of the node's
// timeline at lsn (lazy or not) into dir, and its tablespaces into the
// node's.
func (e *Env) extractBasebackup(ctx context.Context, n *Node, lsn pgdata.LSN, lazy bool, dir string) error {
	pr, pw := io.Pipe()
	untarred := make(chan error, 1)
	go func() {
		_, err := tarfile.ExtractBasebackup(pr, dir, n.TablespacesDir())
		if err != nil {
			err = fmt.Errorf("basebackup tar: %w", err)
		}
		pr.CloseWithError(err) // unblocks the writer if extraction stops early
		untarred <- err
	}()
	what := "basebackup"
	if lazy {
		what = "lazy basebackup"
	}
	prog := newProgress(e.Progress, fmt.Sprintf("%s of %s at %s", what, n.Branch, lsn), 0)
	err := e.Pageserver().Basebackup(ctx, n.Tenant, n.Timeline, lsn, lazy, io.MultiWriter(pw, prog))
	pw.CloseWithError(err)
	if uerr := <-untarred; err == nil && uerr != nil {
		err = uerr
	}
	if err != nil {
		return fmt.Errorf("basebackup of branch %s at %s: %w", n.Branch, lsn, err)
	}
	prog.Done()
	return nil
}

// StartNode starts the node's server, rebuilding its data directory from
// the page server first unless it may be reused (see Node.CleanLSN), and,
// for a writable node, points the page server's WAL receiver at it. The
// data directory is lazy (served through FUSE, see compute_lazy.go)
// unless eager is set or FUSE cannot be mounted here.
func (e *Env) StartNode(ctx context.Context, n *Node, eager bool) (err error) {
	phases := newPhaseTimer(e.Log.With().Str("op", "pg start").Str("node", n.Name).Logger())
	if _, err := e.checkLazy(ctx, n); err != nil {
		return err
	}
	phases.done("crash check")
	c, err := n.cluster(ctx, e)
	if err != nil {
		return err
	}
	phases.done("postgres binaries")
	wasLazy := n.IsLazy()
	if pid, err := c.PID(); err == nil {
		fmt.Fprintf(e.Progress, "compute node %s already running (pid %d)\n", n.Name, pid)
		return nil
	} else if !errors.Is(err, pgcluster.ErrNotRunning) {
		return err
	}
	// No server runs here. A lazy node's FUSE server outlives a
	// PostgreSQL that died on its own (a PANIC: its disk full, say): it
	// goes now, as zenith pg stop would make it go, so that the data
	// directory can be rebuilt.
	if n.IsLazy() && isMounted(n.DataDir()) {
		if err := e.unmountLazy(ctx, n); err != nil {
			return fmt.Errorf("compute node %s: %w", n.Name, err)
		}
	}
	// A socket lock file left by one that was killed
	// would stop the new one (PostgreSQL trusts the pid in it while that
	// pid, perhaps a zombie or another process now, exists).
	if err := os.RemoveAll(n.socketDir()); err != nil {
		return fmt.Errorf("compute node %s: %w", n.Name, err)
	}
	branch, err := e.findBranch(ctx, n.Tenant, n.Branch)
	if err != nil {
		return err
	}
	phases.done("branch")
	if branch.Timeline != n.Timeline {
		return fmt.Errorf("branch %s is now timeline %s, but node %s was made for timeline %s: remove it with zenith pg stop %s --destroy", n.Branch, branch.Timeline, n.Name, n.Timeline, n.Name)
	}
	if n.Writes() {
		// A writable node continues at the branch's end, which the page
		// server cannot serve: say so now, not after a wait.
		if branch.IngestStopped != "" {
			return errIngestStopped(branch)
		}
		if err := e.checkOnlyWriter(ctx, n); err != nil {
			return err
		}
		phases.done("only writer")
	}
	wantLazy := !eager && e.lazyUnavailable() == ""
	dataDir := n.DataDir()
	if n.IsLazy() {
		dataDir = n.lazyBacking()
	}
	_, statErr := os.Stat(filepath.Join(dataDir, "PG_VERSION"))
	reusable := statErr == nil && n.CleanLSN != 0 && (n.ReadOnly() || n.CleanLSN == acknowledgedLSN(branch)) &&
		n.IsLazy() == wantLazy && (!n.IsLazy() || n.Fresh)
	if n.Replica {
		// A replica starts where the real WAL has a checkpoint: from
		// its data directory as built, while its upstream still holds
		// the WAL from there, or from a new one.
		reusable = statErr == nil && n.Fresh && n.IsLazy() == wantLazy && e.upstreamHoldsFrom(ctx, n, n.BasebackupLSN)
	}
	// With safekeepers, a writable node continues where the election
	// says, always from a fresh basebackup there: a node built there and
	// never started since (pg start of a new node) has one already.
	var el *safekeeper.Election
	if n.Writes() && e.Config.Safekeepers.Count > 0 {
		elected, err := e.elect(ctx, n)
		if err != nil {
			return err
		}
		el = &elected
		phases.done("election")
		reusable = reusable && n.Fresh && (elected.StartLSN == 0 || elected.StartLSN == n.BasebackupLSN)
	}
	if !reusable && n.Replica {
		if err := e.buildReplica(ctx, n, eager); err != nil {
			return err
		}
	} else if !reusable {
		lsn := n.ReadOnlyLSN
		if el != nil && el.StartLSN != 0 {
			lsn = el.StartLSN
		}
		if lsn == 0 {
			if lsn, err = latestLSN(branch); err != nil {
				return err
			}
		}
		if n.CleanLSN == 0 && n.BasebackupLSN != 0 {
			fmt.Fprintf(e.Progress, "compute node %s was not stopped cleanly: rebuilding its data directory from the page server at %s\n", n.Name, lsn)
		}
		if err := e.buildNode(ctx, n, lsn, eager); err != nil {
			return err
		}
		phases.done("data directory")
	}
	if err := e.checkComputePortFree(n.Port); err != nil {
		return fmt.Errorf("compute node %s: %w", n.Name, err)
	}
	if n.IsLazy() {
		if err := e.mountLazy(ctx, n); err != nil {
			fmt.Fprintf(e.Progress, "compute node %s: eager mode (a full copy of the data): cannot mount FUSE: %v\n", n.Name, firstLine(err))
			if err := e.buildDataDir(ctx, n, n.BasebackupLSN, false); err != nil {
				return err
			}
		} else {
			defer func() {
				if err != nil {
					_ = e.unmountLazy(context.Background(), n)
				}
			}()
		}
		phases.done("mount")
	}
	if n.IsLazy() != wasLazy {
		// Rebuilt in the other mode (or eager after a failed mount):
		// the server's postmaster.pid is read where this mode has it.
		if c, err = n.cluster(ctx, e); err != nil {
			return err
		}
	}
	n.CleanLSN, n.Fresh = 0, false
	if err := n.save(); err != nil {
		return err
	}
	if err := c.Start(ctx); err != nil {
		return fmt.Errorf("compute node %s: %w", n.Name, err)
	}
	phases.done("postgres")
	if el != nil {
		if err := e.assignCompute(ctx, n, *el, n.BasebackupLSN); err != nil {
			stopCtx, cancel := context.WithTimeout(context.Background(), computeStopTimeout)
			defer cancel()
			_ = c.Stop(stopCtx, pgcluster.StopImmediate)
			return err
		}
	} else if n.Writes() {
		if err := e.Pageserver().CallMeMaybe(ctx, n.Tenant, n.Timeline, n.walSource(e)); err != nil {
			stopCtx, cancel := context.WithTimeout(context.Background(), computeStopTimeout)
			defer cancel()
			_ = c.Stop(stopCtx, pgcluster.StopImmediate)
			return fmt.Errorf("compute node %s: tell the page server to stream from it: %w", n.Name, err)
		}
		// As with safekeepers (assignCompute): a node stopped before the
		// page server streams from it would take its shutdown checkpoint
		// with it, and its clean stop would wait for it in vain.
		if err := e.waitStreaming(ctx, n, "pageserver", 1, "the page server"); err != nil {
			stopCtx, cancel := context.WithTimeout(context.Background(), computeStopTimeout)
			defer cancel()
			_ = c.Stop(stopCtx, pgcluster.StopImmediate)
			return err
		}
	}
	phases.done("wal sender")
	return nil
}

// checkOnlyWriter fails if another writable node of the timeline runs:
// two servers writing one branch would fork its history.
func (e *Env) checkOnlyWriter(ctx context.Context, n *Node) error {
	nodes, err := e.nodes(&n.Tenant)
	if err != nil {
		return err
	}
	for _, o := range nodes {
		if o.Name == n.Name || !o.Writes() || o.Timeline != n.Timeline {
			continue
		}
		if st, err := o.Status(ctx, e); err == nil && st == "running" {
			return fmt.Errorf("compute node %s already writes to branch %s: stop it first (zenith pg stop %s), or start a read-only node with zenith pg create %s --lsn LSN", o.Name, n.Branch, o.Name, n.Branch)
		}
	}
	return nil
}

// StopNode stops the node's server. A clean (fast) stop of a writable
// node waits until the page server has its last record, so the data
// directory may be reused; an immediate stop, or a page server that does
// not catch up, makes the next start rebuild it.
func (e *Env) StopNode(ctx context.Context, n *Node, immediate bool) error {
	if _, err := e.checkLazy(ctx, n); err != nil {
		return err
	}
	c, err := n.cluster(ctx, e)
	if err != nil {
		return err
	}
	if _, err := c.PID(); errors.Is(err, pgcluster.ErrNotRunning) {
		if n.IsLazy() {
			if err := e.unmountLazy(ctx, n); err != nil {
				return fmt.Errorf("stop compute node %s: %w", n.Name, err)
			}
		}
		// A server that died leaves its socket directory behind.
		return os.RemoveAll(n.socketDir())
	}
	mode := pgcluster.StopFast
	if immediate {
		mode = pgcluster.StopImmediate
	}
	stopCtx, cancel := context.WithTimeout(ctx, computeStopTimeout)
	defer cancel()
	if err := c.Stop(stopCtx, mode); err != nil {
		return fmt.Errorf("stop compute node %s: %w", n.Name, err)
	}
	n.CleanLSN = 0
	if !immediate {
		if n.CleanLSN, err = e.cleanStopLSN(ctx, n, c); err != nil {
			fmt.Fprintf(e.Progress, "compute node %s: %v; its next start rebuilds the data directory\n", n.Name, err)
		} else if err = n.syncFiles(); err != nil {
			n.CleanLSN = 0
			fmt.Fprintf(e.Progress, "compute node %s: %v; its next start rebuilds the data directory\n", n.Name, err)
		}
	}
	if err := n.save(); err != nil {
		return err
	}
	if n.IsLazy() {
		// After PostgreSQL is gone: the mount is busy until then.
		if err := e.unmountLazy(ctx, n); err != nil {
			return fmt.Errorf("stop compute node %s: %w", n.Name, err)
		}
	}
	// The socket directory is outside the node's: do not leave it behind.
	if err := os.RemoveAll(n.socketDir()); err != nil {
		return fmt.Errorf("stop compute node %s: %w", n.Name, err)
	}
	fmt.Fprintf(e.Progress, "compute node %s stopped\n", n.Name)
	return nil
}

// cleanStopLSN returns the LSN at which the data directory of a node just
// shut down cleanly may be reused: for a read-only node its LSN; for a
// writable one the branch's last record LSN once the page server has the
// node's shutdown checkpoint.
func (e *Env) cleanStopLSN(ctx context.Context, n *Node, c *pgcluster.Cluster) (pgdata.LSN, error) {
	cd, err := c.ControlData(ctx)
	if err != nil {
		return 0, err
	}
	if n.Replica {
		// Its next start builds it anew where the WAL then allows.
		if st := cd["Database cluster state"]; st != "shut down in recovery" {
			return 0, fmt.Errorf("cluster state is %q, not shut down in recovery", st)
		}
		return n.BasebackupLSN, nil
	}
	if st := cd["Database cluster state"]; st != "shut down" {
		return 0, fmt.Errorf("cluster state is %q, not shut down", st)
	}
	if n.ReadOnly() {
		return n.ReadOnlyLSN, nil
	}
	ckpt, err := pgdata.ParseLSN(cd["Latest checkpoint location"])
	if err != nil {
		return 0, fmt.Errorf("pg_controldata: %w", err)
	}
	deadline := time.Now().Add(stopCatchUpTimeout)
	for {
		b, err := e.findBranch(ctx, n.Tenant, n.Branch)
		if err != nil {
			return 0, err
		}
		if b.IngestStopped != "" {
			return 0, errIngestStopped(b)
		}
		if b.LastRecordLSN > ckpt {
			return b.LastRecordLSN, nil
		}
		if time.Now().After(deadline) {
			return 0, fmt.Errorf("the page server is at %s, before the shutdown checkpoint at %s, after %v", b.LastRecordLSN, ckpt, stopCatchUpTimeout)
		}
		select {
		case <-ctx.Done():
			return 0, ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// DestroyNode stops the node's server and removes the node. The stop is
// a clean one, so the page server receives the node's WAL up to its
// shutdown checkpoint (immediate makes it immediate).
func (e *Env) DestroyNode(ctx context.Context, n *Node, immediate bool) error {
	if err := e.StopNode(ctx, n, immediate); err != nil {
		return err
	}
	if err := os.RemoveAll(n.dir); err != nil {
		return fmt.Errorf("remove compute node %s: %w", n.Name, err)
	}
	fmt.Fprintf(e.Progress, "compute node %s destroyed\n", n.Name)
	return nil
}
