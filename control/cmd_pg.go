package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/urfave/cli/v2"

	"github.com/zenithdb/zenith/pageserver/api"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// PgCommand is `zenith pg create|start|stop|list`.
func PgCommand() *cli.Command {
	return &cli.Command{
		Name:  "pg",
		Usage: "manage compute nodes (PostgreSQL servers on a branch)",
		Subcommands: []*cli.Command{
			pgCreateCommand(), pgStartCommand(), pgStopCommand(), pgListCommand(), pgFuseCommand(),
		},
	}
}

func nodeFlags() []cli.Flag {
	return []cli.Flag{
		tenantFlag(),
		&cli.StringFlag{Name: "name", Usage: "name the node `NODE` (default: the branch's name)"},
		&cli.IntFlag{Name: "port", Usage: "listen on `PORT` of compute.listen_addresses (default: a free port, kept for the node's life)"},
		&cli.StringFlag{Name: "lsn", Usage: "make a read-only node showing the branch as of `LSN` (e.g. 0/16B9188)"},
		&cli.StringSliceFlag{Name: "c", Usage: "PostgreSQL setting `name=value` for the node (repeatable)"},
		&cli.BoolFlag{Name: "eager", Usage: "copy every relation file into the data directory instead of serving them lazily through FUSE"},
		&cli.BoolFlag{Name: "replica", Usage: "make a read replica: a hot standby that follows the branch, streaming its WAL from the safekeepers (default name: BRANCH-replica)"},
	}
}

// nodeOptions reads pg create's flags.
func nodeOptions(c *cli.Context, t id.TenantID, branch string) (NodeOptions, error) {
	o := NodeOptions{Tenant: t, Branch: branch, Name: c.String("name"), Port: c.Int("port"), Eager: c.Bool("eager"), Replica: c.Bool("replica")}
	if err := api.CheckTimelineRef(branch); err != nil {
		return o, err
	}
	if o.Replica && o.Name == "" {
		o.Name = replicaName(branch)
	}
	if s := c.String("lsn"); s != "" {
		lsn, err := pgdata.ParseLSN(s)
		if err != nil {
			return o, fmt.Errorf("--lsn: %w (both halves are hexadecimal, as pg_current_wal_lsn() prints them)", err)
		}
		if lsn == 0 {
			return o, fmt.Errorf("--lsn 0/0 is before any WAL")
		}
		o.LSN = lsn
	}
	var err error
	o.Settings, err = parseSettings(c.StringSlice("c"))
	return o, err
}

func pgCreateCommand() *cli.Command {
	return &cli.Command{
		Name:      "create",
		Usage:     "create a compute node on a branch",
		ArgsUsage: "BRANCH",
		Description: `Creates a compute node: a PostgreSQL data directory built from the page
server's basebackup of BRANCH, under .zenith/pgdatadirs/tenants/TENANT/NODE.
It does not start it (zenith pg start NODE does).

With --lsn the node is a read-only view of the branch as of that LSN:
default_transaction_read_only is on and the page server does not take its
WAL. Writes made there anyway stay on the node and vanish when it is rebuilt.

With --replica the node is a read replica of the branch: a stock PostgreSQL
hot standby that streams the branch's WAL from the safekeepers and replays
it, read-only, a little behind the primary (zenith pg start --help says more).

Examples:
  zenith pg create main
  zenith pg create main --name reporting --port 55433 -c shared_buffers=256MB
  zenith pg create main --name yesterday --lsn 0/16B9188
  zenith pg create main --name reader --replica`,
		Flags: nodeFlags(),
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return fmt.Errorf("pg create takes one BRANCH (see zenith pg create --help)")
			}
			e, t, err := openTenant(c)
			if err != nil {
				return err
			}
			o, err := nodeOptions(c, t, c.Args().First())
			if err != nil {
				return err
			}
			n, err := e.CreateNode(c.Context, o)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.Out, "created compute node %s on branch %s (%s)\n", n.Name, n.Branch, n.Address(e))
			return nil
		},
	}
}

func pgStartCommand() *cli.Command {
	return &cli.Command{
		Name:      "start",
		Usage:     "start a compute node (creating it on a branch if needed)",
		ArgsUsage: "BRANCH|NODE",
		Description: `Starts the compute node NODE, or, if there is none of that name, creates a
node on the branch of that name (accepting pg create's flags) and starts it.
With --name, the node is the one named so, created on BRANCH if needed.
Prints the connection string on success.

The data directory is reused only if the node was stopped cleanly and the
branch has not moved since; otherwise it is rebuilt from the page server at
the branch's last LSN, so a node that crashed never runs on stale files.

With --replica the node (named --name, or BRANCH-replica) is a read replica: a stock PostgreSQL hot standby of the branch. It
streams the WAL the safekeepers have committed and replays it; queries see
the branch a moment behind the primary, and anything that writes fails
("cannot execute ... in a read-only transaction"). It keeps following when
the primary is stopped, restarted or destroyed and made anew, and when there
is no primary at all it waits for the next one. zenith pg list shows its
replay LSN and how far it is behind the safekeepers' commit LSN (LAG).
Every start builds its data directory anew: at a fresh checkpoint of the
running primary, or at the branch's end when none runs. Replicas need
safekeepers (zenith init --safekeepers 3). A hot standby needs
max_connections, max_worker_processes, max_wal_senders,
max_prepared_transactions and max_locks_per_transaction at least as high as
its primary's: a replica takes them from the basebackup unless -c gives
them; if a later primary raises them, the replica pauses replay until it is
restarted (zenith pg stop NAME && zenith pg start NAME).

ZENITH_LOG=debug in the environment prints, on stderr, how long each
phase of the start took (basebackup, mount, PostgreSQL's start, the wait
for the page server or the safekeepers to stream from it).

With --ephemeral it makes a throwaway database for a CI job: a new branch
from BRANCH (at its end, or BRANCH@LSN / BRANCH@TIME) named --name or
ephemeral-RANDOM, and a node of that name on it. zenith pg stop NAME
--destroy --immediate throws the node away; the branch stays (zenith cannot
delete branches yet).

Examples:
  zenith pg start main
  psql "$(zenith pg start main)"
  zenith pg start feature --port 55434
  psql "$(zenith pg start main --replica)"         # node main-replica
  DB=$(zenith pg start main --ephemeral --name ci-$CI_JOB_ID) && psql "$DB" -f smoke.sql
  zenith pg stop ci-$CI_JOB_ID --destroy --immediate`,
		Flags: append(nodeFlags(), ephemeralFlag()),
		Action: func(c *cli.Context) error {
			if c.Bool("ephemeral") {
				return startEphemeral(c)
			}
			if c.NArg() != 1 {
				return fmt.Errorf("pg start takes one BRANCH or NODE (see zenith pg start --help)")
			}
			e, t, err := openTenant(c)
			if err != nil {
				return err
			}
			e.checkPostgresAhead(c.Context)
			// pg start BRANCH --name NODE is about NODE, made on BRANCH.
			name := c.Args().First()
			switch {
			case c.String("name") != "":
				name = c.String("name")
			case c.Bool("replica"):
				name = replicaName(name)
			}
			n, err := e.node(t, name)
			if err == nil && c.Bool("replica") && !n.Replica {
				return fmt.Errorf("compute node %s exists and is a %s node, not a replica: give the replica another --name", n.Name, n.Role())
			}
			if errors.Is(err, ErrNoSuchNode) {
				o, oerr := nodeOptions(c, t, c.Args().First())
				if oerr != nil {
					return oerr
				}
				n, err = e.CreateNode(c.Context, o)
			}
			if err != nil {
				return err
			}
			if err := e.StartNode(c.Context, n, c.Bool("eager")); err != nil {
				return err
			}
			fmt.Fprintln(e.Out, n.ConnString(e))
			return nil
		},
	}
}

func pgStopCommand() *cli.Command {
	return &cli.Command{
		Name:      "stop",
		Usage:     "stop a compute node",
		ArgsUsage: "NODE",
		Description: `Stops the compute node's PostgreSQL (fast shutdown) and waits until the page
server has its last WAL. With --destroy the node and its data directory are
removed; the branch and its data stay in the page server.

Examples:
  zenith pg stop main
  zenith pg stop main --destroy`,
		Flags: []cli.Flag{
			tenantFlag(),
			&cli.BoolFlag{Name: "destroy", Usage: "remove the node after stopping it"},
			&cli.BoolFlag{Name: "immediate", Usage: "immediate shutdown (the next start rebuilds the data directory)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return fmt.Errorf("pg stop takes one NODE (see zenith pg stop --help)")
			}
			e, t, err := openTenant(c)
			if err != nil {
				return err
			}
			n, err := e.node(t, c.Args().First())
			if err != nil {
				return err
			}
			if c.Bool("destroy") {
				return e.DestroyNode(c.Context, n, c.Bool("immediate"))
			}
			return e.StopNode(c.Context, n, c.Bool("immediate"))
		},
	}
}

func pgListCommand() *cli.Command {
	return &cli.Command{
		Name:  "list",
		Usage: "list compute nodes",
		Description: `Lists the compute nodes of every tenant (or of --tenant): NODE, ADDRESS,
TENANT, BRANCH, ROLE (primary: the node that writes the branch; replica: a
hot standby following it; read-only: a view at one LSN), LSN (a running
primary's current WAL position; a running replica's replay position; a
read-only node's LSN; otherwise the LSN its data directory was built at),
LAG (a running replica's distance behind the safekeepers' commit LSN),
STATUS (running, stopped, or crashed: not stopped cleanly, rebuilt at the
next start; below the table, why it crashed, as far as the end of its
server log and the free space of its directory tell: crash in --json). A branch whose WAL the page server stopped ingesting is named
below the table with where and why (ingest_stopped in --json): its commits
go on, but no compute can start at its end until the page server is
restarted with the cause fixed.

Examples:
  zenith pg list
  zenith pg list --json | jq -r '.[] | select(.status=="running") | .connstr'`,
		Flags: []cli.Flag{tenantFlag(), &cli.BoolFlag{Name: "json", Usage: "print JSON"}},
		Action: func(c *cli.Context) error {
			e, err := openEnv(c)
			if err != nil {
				return err
			}
			var only *id.TenantID
			if c.String("tenant") != "" {
				t, err := e.tenant(c)
				if err != nil {
					return err
				}
				only = &t
			}
			rows, err := e.nodeRows(c.Context, only)
			if err != nil {
				return err
			}
			var stops []IngestStop
			if len(rows) > 0 {
				if stops, err = e.ingestStops(c.Context, nodeTenants(rows)); err != nil {
					fmt.Fprintf(e.Progress, "cannot ask the page server whether ingest of the branches goes on: %v\n", err)
				}
				markIngestStops(rows, stops)
			}
			if c.Bool("json") {
				return writeJSON(e.Out, rows)
			}
			if err := printNodes(e.Out, rows); err != nil {
				return err
			}
			printIngestStops(e.Out, stops)
			return nil
		},
	}
}

// replicaName is the default name of a replica of branch.
func replicaName(branch string) string { return branch + "-replica" }

// openTenant loads the repository and the tenant command c is about.
func openTenant(c *cli.Context) (*Env, id.TenantID, error) {
	e, err := openEnv(c)
	if err != nil {
		return nil, id.TenantID{}, err
	}
	t, err := e.tenant(c)
	return e, t, err
}

// nodeRow is one compute node in pg list and status.
type nodeRow struct {
	Name     string        `json:"name"`
	Address  string        `json:"address"`
	Tenant   id.TenantID   `json:"tenant"`
	Branch   string        `json:"branch"`
	Timeline id.TimelineID `json:"timeline"`
	LSN      pgdata.LSN    `json:"lsn"`
	ReadOnly bool          `json:"read_only"`
	// Role is primary, replica or read-only (Node.Role).
	Role string `json:"role"`
	// ReplayLagBytes is how far a running replica's replay is behind
	// the safekeepers' commit LSN; absent for others, or when it could
	// not be found.
	ReplayLagBytes *uint64 `json:"replay_lag_bytes,omitempty"`
	Status         string  `json:"status"`
	ConnStr        string  `json:"connstr"`
	// Mode is eager or lazy (relation files served through FUSE).
	Mode string `json:"mode"`
	// DiskBytes is the disk space the node's files take.
	DiskBytes int64 `json:"disk_bytes"`
	// IngestStopped is set when the page server stopped ingesting the
	// branch's WAL: where and why.
	IngestStopped string `json:"ingest_stopped,omitempty"`
	// Crash says why a crashed node stopped, as far as zenith can tell
	// (its last PANIC, a full file system).
	Crash string `json:"crash,omitempty"`
}

func (e *Env) nodeRows(ctx context.Context, t *id.TenantID) ([]nodeRow, error) {
	nodes, err := e.nodes(t)
	if err != nil {
		return nil, err
	}
	rows := make([]nodeRow, 0, len(nodes))
	for _, n := range nodes {
		st, err := n.Status(ctx, e)
		if err != nil {
			return nil, err
		}
		lsn := n.BasebackupLSN
		var lag *uint64
		switch {
		case n.ReadOnly():
			lsn = n.ReadOnlyLSN
		case st == "running" && n.Replica:
			replay, l, err := replicaLag(ctx, e, n)
			if replay != 0 {
				lsn = replay
			}
			if err == nil {
				lag = &l
			}
		case st == "running":
			if cur, err := currentLSN(ctx, e, n); err == nil {
				lsn = cur
			}
		}
		rows = append(rows, nodeRow{
			Name: n.Name, Address: n.Address(e), Tenant: n.Tenant, Branch: n.Branch, Timeline: n.Timeline,
			LSN: lsn, ReadOnly: n.ReadOnly(), Role: n.Role(), ReplayLagBytes: lag, Status: st, ConnStr: n.ConnString(e),
			Mode: n.modeName(), DiskBytes: n.DiskUse(),
		})
		if st == "crashed" {
			rows[len(rows)-1].Crash = n.crashReason()
		}
	}
	return rows, nil
}

// currentLSN asks a running node for its WAL insert position.
func currentLSN(ctx context.Context, e *Env, n *Node) (pgdata.LSN, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	conn, err := pgconn.Connect(ctx, n.ConnString(e)+"?sslmode=disable")
	if err != nil {
		return 0, err
	}
	defer conn.Close(context.Background())
	res, err := conn.Exec(ctx, "SELECT pg_current_wal_insert_lsn()").ReadAll()
	if err != nil {
		return 0, err
	}
	if len(res) != 1 || len(res[0].Rows) != 1 {
		return 0, errors.New("pg_current_wal_insert_lsn: no row")
	}
	return pgdata.ParseLSN(string(res[0].Rows[0][0]))
}

func printNodes(w io.Writer, rows []nodeRow) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NODE\tADDRESS\tTENANT\tBRANCH\tROLE\tLSN\tLAG\tSTATUS\tMODE\tDISK")
	for _, r := range rows {
		lag := "-"
		if r.ReplayLagBytes != nil {
			lag = formatBytes(int64(*r.ReplayLagBytes))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.Name, r.Address, r.Tenant, r.Branch, r.Role, r.LSN, lag, r.Status, r.Mode, formatBytes(r.DiskBytes))
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	for _, r := range rows {
		if r.Crash != "" {
			fmt.Fprintf(w, "node %s of tenant %s crashed: %s\n  (free space if its disk is full; zenith pg start %s then rebuilds it from the page server)\n", r.Name, r.Tenant, r.Crash, r.Name)
		}
	}
	return nil
}
