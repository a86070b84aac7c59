package control

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"

	"github.com/pelletier/go-toml/v2"

	"github.com/zenithdb/zenith/pageserver/api"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/pgcluster"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/tomlconf"
	"github.com/zenithdb/zenith/repo/vfs"
)

// nodeFileName is a compute node's description in its directory.
const nodeFileName = "node.toml"

// ErrNoSuchNode is returned (wrapped) for a compute node name that does not
// exist.
var ErrNoSuchNode = errors.New("no such compute node")

// Node is a compute node: a stock PostgreSQL 15 server whose data
// directory is built from a page server basebackup of one branch. Its
// directory (Env.TenantNodesDir/NAME) holds node.toml, the data directory
// pgdata/ and the server log postgres.log.
//
// A node with ReadOnlyLSN set is a read-only view of the branch at that
// LSN: PostgreSQL runs as a normal server with
// default_transaction_read_only=on, and the page server does not stream
// from it, so its own WAL goes nowhere. (A hot standby would need the WAL
// after the LSN, which a view of the past must not replay.) A session can
// still SET default_transaction_read_only=off and write; those writes are
// local to the node and lost when it is rebuilt.
type Node struct {
	Name     string        `toml:"name"`
	Tenant   id.TenantID   `toml:"tenant"`
	Branch   string        `toml:"branch"`
	Timeline id.TimelineID `toml:"timeline"`
	Port     int           `toml:"port"`
	// ReadOnlyLSN is the LSN of a read-only node; 0/0 for a node that
	// follows the branch and writes to it.
	ReadOnlyLSN pgdata.LSN `toml:"read_only_lsn"`
	// Replica is set for a read replica: a hot standby that follows the
	// branch by streaming its WAL from the safekeepers (compute_replica.go).
	Replica bool `toml:"replica"`
	// Settings are the user's PostgreSQL settings (pg create -c).
	Settings map[string]string `toml:"settings"`
	// BasebackupLSN is the LSN the data directory was last built at.
	BasebackupLSN pgdata.LSN `toml:"basebackup_lsn"`
	// CleanLSN is set while the data directory may be reused: it was just
	// built, or its server was stopped cleanly and the page server had
	// everything, at this LSN of the branch. 0/0 while the server runs and
	// after an unclean stop: the next start rebuilds the data directory.
	CleanLSN pgdata.LSN `toml:"clean_lsn"`
	// Mode is how the data directory was built: ModeEager or ModeLazy
	// ("" in nodes made before lazy mode: eager).
	Mode string `toml:"mode"`
	// Fresh is set while the data directory is as built and never
	// started on: the only state in which a lazy one may be reused (what
	// its FUSE server knew of it died with the server).
	Fresh bool `toml:"fresh"`
	// LazyCacheBytes bounds a lazy node's cache of fetched blocks on its
	// disk (0: 1 GiB); blocks the compute wrote are not counted.
	LazyCacheBytes int64 `toml:"lazy_cache_bytes"`
	// LazyPrewarmBytes is how much of a lazy node's relation files its
	// FUSE server reads in the background once PostgreSQL is ready,
	// smallest files first (0: as much as the cache holds; negative:
	// none).
	LazyPrewarmBytes int64 `toml:"lazy_prewarm_bytes"`
	// LazyFetchTimeout bounds each fetch of a lazy node's pages; one that
	// takes longer is an I/O error in the backend that read (0: 20s).
	LazyFetchTimeout tomlconf.Duration `toml:"lazy_fetch_timeout"`

	dir string
}

// ReadOnly reports whether the node is a read-only view at ReadOnlyLSN.
func (n *Node) ReadOnly() bool { return n.ReadOnlyLSN != 0 }

// Writes reports whether the node is its branch's primary: neither a
// read-only view nor a replica.
func (n *Node) Writes() bool { return !n.ReadOnly() && !n.Replica }

// Role is "primary", "replica" or "read-only" (a view at ReadOnlyLSN).
func (n *Node) Role() string {
	switch {
	case n.Replica:
		return "replica"
	case n.ReadOnly():
		return "read-only"
	}
	return "primary"
}

// Dir is the node's directory.
func (n *Node) Dir() string { return n.dir }

// DataDir is the node's PostgreSQL data directory.
func (n *Node) DataDir() string { return filepath.Join(n.dir, "pgdata") }

// TablespacesDir holds the node's tablespaces that were created with a
// LOCATION, one directory per tablespace OID, each linked from
// pg_tblspc/<OID> in the data directory. A LOCATION belongs to the
// compute that ran CREATE TABLESPACE: a node built from the page server
// never uses it (two nodes on one host would share its files, and the
// old compute may still run there), so pg_tablespace_location() on a
// rebuilt node names this directory. In-place tablespaces
// (allow_in_place_tablespaces and an empty LOCATION) stay in
// pg_tblspc/<OID>.
func (n *Node) TablespacesDir() string { return filepath.Join(n.dir, "tablespaces") }

// LogFile is the node's PostgreSQL log.
func (n *Node) LogFile() string { return filepath.Join(n.dir, "postgres.log") }

// Address is where the node is reached: the configured compute host
// (compute.advertise_host) and the node's port.
func (n *Node) Address(e *Env) string {
	return net.JoinHostPort(e.Config.Compute.AdvertiseHost, strconv.Itoa(n.Port))
}

// ConnString is a connection URL for database postgres as the superuser,
// the one users, the page server and the safekeepers connect with.
func (n *Node) ConnString(e *Env) string {
	return fmt.Sprintf("postgresql://%s@%s/postgres", pgcluster.DefaultSuperuser, n.Address(e))
}

// walSource is the connection string the page server streams the node's
// WAL with when there are no safekeepers (callmemaybe).
func (n *Node) walSource(e *Env) string {
	return n.ConnString(e) + "?application_name=pageserver"
}

// socketDir is the node's unix socket directory: outside the node
// directory, whose path may be too long for a socket, and named after it.
func (n *Node) socketDir() string {
	sum := sha256.Sum256([]byte(n.dir))
	return filepath.Join(os.TempDir(), "zenith-sock-"+hex.EncodeToString(sum[:6]))
}

// cluster returns the pgcluster.Cluster that runs the node's server.
func (n *Node) cluster(ctx context.Context, e *Env) (*pgcluster.Cluster, error) {
	e.waitPostgresChecked()
	return pgcluster.New(ctx, pgcluster.Options{
		BinDir:    e.Config.PGBinDir,
		DataDir:   n.DataDir(),
		SocketDir: n.socketDir(),
		Port:      n.Port,
		LogFile:   n.LogFile(),
		// Over zenith.conf's listen_addresses: the server's command line
		// would otherwise say 127.0.0.1.
		ListenAddresses: strings.Join(e.Config.Compute.ListenHosts(), ","),
		// A writable node's start connects right after, to wait for
		// its walreceiver (waitStreaming), while the walreceiver
		// connects: one backend start-up, not two in a row.
		ReadyAtPidFile: n.Writes(),
		PidFileDir:     n.pidFileDir(),
	})
}

// pidFileDir is where the node's postmaster.pid is read during a start
// (pgcluster.Options.PidFileDir): a lazy node's backing directory, past
// its FUSE server.
func (n *Node) pidFileDir() string {
	if n.IsLazy() {
		return n.lazyBacking()
	}
	return ""
}

// Status is "running", "stopped", or "crashed" (a server that did not
// stop cleanly: the next start rebuilds its data directory).
func (n *Node) Status(ctx context.Context, e *Env) (string, error) {
	if n.IsLazy() {
		_, err := n.fuseDaemon(e).PID(io.Discard)
		if (err == nil) != isMounted(n.DataDir()) {
			return "crashed", nil
		}
	}
	c, err := n.cluster(ctx, e)
	if err != nil {
		return "", err
	}
	_, err = c.PID()
	switch {
	case err == nil:
		return "running", nil
	case errors.Is(err, pgcluster.ErrNotRunning) && n.CleanLSN != 0:
		return "stopped", nil
	case errors.Is(err, pgcluster.ErrNotRunning):
		return "crashed", nil
	}
	return "", fmt.Errorf("node %s: %w", n.Name, err)
}

func (n *Node) save() error {
	b, err := toml.Marshal(n)
	if err != nil {
		return fmt.Errorf("encode node %s: %w", n.Name, err)
	}
	_, err = vfs.WriteFileAtomic(vfs.Default, filepath.Join(n.dir, nodeFileName), b, 0o644)
	return err
}

func loadNode(dir string) (*Node, error) {
	path := filepath.Join(dir, nodeFileName)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read compute node: %w", err)
	}
	var n Node
	if err := tomlconf.DecodeStrict(path, b, &n); err != nil {
		return nil, err
	}
	n.dir = dir
	return &n, nil
}

// node returns tenant t's node name.
func (e *Env) node(t id.TenantID, name string) (*Node, error) {
	if err := api.CheckName("node", name); err != nil {
		return nil, err
	}
	dir := filepath.Join(e.TenantNodesDir(t), name)
	if _, err := os.Stat(filepath.Join(dir, nodeFileName)); errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("%w %q in tenant %s (zenith pg list shows them)", ErrNoSuchNode, name, t)
	}
	return loadNode(dir)
}

// nodes returns the compute nodes of tenant t, or of every tenant when t
// is nil, sorted by tenant and name.
func (e *Env) nodes(t *id.TenantID) ([]*Node, error) {
	pattern := filepath.Join(e.Dir, "pgdatadirs", "tenants", "*", "*", nodeFileName)
	if t != nil {
		pattern = filepath.Join(e.TenantNodesDir(*t), "*", nodeFileName)
	}
	files, err := filepath.Glob(pattern)
	if err != nil {
		return nil, err
	}
	sort.Strings(files)
	nodes := make([]*Node, 0, len(files))
	for _, f := range files {
		n, err := loadNode(filepath.Dir(f))
		if err != nil {
			return nil, err
		}
		nodes = append(nodes, n)
	}
	return nodes, nil
}

// checkPostgresAhead checks the PostgreSQL programs in the background
// (pgcluster.FindBinDir: a `postgres --version` started, tens of
// milliseconds on a loaded machine), so that pg start does it while it
// waits for the page server's basebackup; Node.cluster waits for it and
// then finds them checked. A failure is left for that later check to
// report.
func (e *Env) checkPostgresAhead(ctx context.Context) {
	done := make(chan struct{})
	e.binCheck = done
	go func() {
		defer close(done)
		_, _ = pgcluster.FindBinDir(ctx, e.Config.PGBinDir)
	}()
}

// waitPostgresChecked waits for the check checkPostgresAhead began, if
// it did.
func (e *Env) waitPostgresChecked() {
	if e.binCheck != nil {
		<-e.binCheck
	}
}
