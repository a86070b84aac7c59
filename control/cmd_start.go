package control

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/urfave/cli/v2"

	"github.com/zenithdb/zenith/pageserver"
	"github.com/zenithdb/zenith/repo/pgcluster"
)

// StartCommand is `zenith start`.
func StartCommand() *cli.Command {
	return &cli.Command{
		Name:  "start",
		Usage: "start the page server and safekeepers in the background",
		Description: `Starts the safekeepers and the page server of the repository as background
processes (logs and pidfiles in the repository directory) and waits until
each answers. Compute nodes are started with zenith pg start.

Example:
  zenith start && zenith pg start main`,
		Action: func(c *cli.Context) error {
			e, err := openEnv(c)
			if err != nil {
				return err
			}
			return e.startAll(c.Context)
		},
	}
}

// StopCommand is `zenith stop`.
func StopCommand() *cli.Command {
	return &cli.Command{
		Name:  "stop",
		Usage: "stop every compute node, then the page server and safekeepers",
		Description: `Stops the compute nodes first (so the page server receives their last WAL),
then the page server and the safekeepers. With --immediate, compute nodes
stop without a checkpoint (their data directories are rebuilt at the next
start) and the services are killed; nothing acknowledged is lost either way.

Examples:
  zenith stop
  zenith stop --immediate`,
		Flags: []cli.Flag{
			&cli.BoolFlag{Name: "immediate", Usage: "do not wait for clean shutdowns"},
		},
		Action: func(c *cli.Context) error {
			e, err := openEnv(c)
			if err != nil {
				return err
			}
			return e.stopAll(c.Context, c.Bool("immediate"))
		},
	}
}

// processStatus is one background process in zenith status.
type processStatus struct {
	Name    string `json:"name"`
	Running bool   `json:"running"`
	PID     int    `json:"pid,omitempty"`
	Address string `json:"address,omitempty"`
	Log     string `json:"log,omitempty"`
	// Memory is what the running process reports of its memory.
	Memory *processMemory `json:"memory,omitempty"`
}

// StatusCommand is `zenith status`.
func StatusCommand() *cli.Command {
	return &cli.Command{
		Name:  "status",
		Usage: "show the page server, safekeepers and compute nodes",
		Description: `Shows whether each background process runs (by its verified pidfile), the
memory each running one reports (resident, Go heap; for the page server also
its in-memory layers, page cache and block cache next to their limits, the
WAL received but not yet ingested, and the layer files open next to
max_open_layer_files), and the compute nodes of every
tenant. A stale pidfile is reported and removed. A branch whose WAL the page
server stopped ingesting (a record it could not ingest) is named with where
and why: its commits go on, but no compute can start at its end until the
page server is restarted with the cause fixed.

Examples:
  zenith status
  zenith status --json | jq '.processes[] | select(.running | not)'`,
		Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON"}},
		Action: func(c *cli.Context) error {
			e, err := openEnv(c)
			if err != nil {
				return err
			}
			var procs []processStatus
			if e.Config.Pageserver.Local {
				p := e.daemonStatus(e.pageserverDaemon(), e.Config.Pageserver.ListenPG)
				if p.Running {
					p.Memory = e.pageserverMemory(c.Context)
				}
				procs = append(procs, p)
			}
			for i, sk := range e.Config.SafekeeperList() {
				if sk.Local {
					p := e.daemonStatus(e.safekeeperDaemon(i+1), sk.ListenPG)
					if p.Running {
						p.Memory = e.safekeeperMemory(c.Context, i+1)
					}
					procs = append(procs, p)
				}
			}
			nodes, err := e.nodeRows(c.Context, nil)
			if err != nil {
				return err
			}
			// Only a page server that runs can say; zenith status
			// never fails for one that does not.
			var stops []IngestStop
			if !e.Config.Pageserver.Local || (len(procs) > 0 && procs[0].Running) {
				if stops, err = e.ingestStops(c.Context, nil); err != nil {
					fmt.Fprintf(e.Progress, "cannot ask the page server whether ingest goes on: %v\n", err)
				}
				markIngestStops(nodes, stops)
			}
			if c.Bool("json") {
				return writeJSON(e.Out, struct {
					Repository    string          `json:"repository"`
					Processes     []processStatus `json:"processes"`
					Computes      []nodeRow       `json:"computes"`
					IngestStopped []IngestStop    `json:"ingest_stopped,omitempty"`
				}{e.Dir, procs, nodes, stops})
			}
			fmt.Fprintf(e.Out, "repository %s\n", e.Dir)
			for _, p := range procs {
				if p.Running {
					fmt.Fprintf(e.Out, "%s: running, pid %d, %s\n", p.Name, p.PID, p.Address)
					if p.Memory != nil {
						fmt.Fprintf(e.Out, "  memory: %s\n", p.Memory)
						for _, l := range p.Memory.diskLines() {
							fmt.Fprintf(e.Out, "  %s\n", l)
						}
					}
				} else {
					fmt.Fprintf(e.Out, "%s: stopped\n", p.Name)
				}
			}
			for _, r := range e.remoteServices() {
				state := "answers"
				if err := dialCheck(c.Context, r.Addr); err != nil {
					state = "does not answer"
				}
				fmt.Fprintf(e.Out, "%s: on another host, %s, %s\n", r.Name, r.Addr, state)
			}
			if err := printNodes(e.Out, nodes); err != nil {
				return err
			}
			printIngestStops(e.Out, stops)
			return nil
		},
	}
}

func (e *Env) daemonStatus(d *Daemon, addr string) processStatus {
	st := processStatus{Name: d.Name, Address: addr, Log: d.LogPath}
	if pid, err := d.PID(e.Progress); err == nil {
		st.Running, st.PID = true, pid
	}
	return st
}

// PageserverCommand is `zenith pageserver start|stop|status`; the
// page server's own `run` joins it (see Commands).
func PageserverCommand() *cli.Command {
	daemonAction := func(f func(e *Env, c *cli.Context, d *Daemon) error) cli.ActionFunc {
		return func(c *cli.Context) error {
			e, err := openEnv(c)
			if err != nil {
				return err
			}
			if !e.Config.Pageserver.Local {
				return fmt.Errorf("the page server at %s does not run from this repository (config.toml pageserver.local = false)", e.Config.Pageserver.ListenPG)
			}
			return f(e, c, e.pageserverDaemon())
		}
	}
	return &cli.Command{
		Name:  "pageserver",
		Usage: "manage the page server",
		Subcommands: []*cli.Command{
			pageserverInitCommand(),
			{
				Name:  "start",
				Usage: "start the page server in the background",
				Description: "Starts the repository's page server and waits until it answers; then attaches\n" +
					"again, from remote storage, the tenants it should hold and does not (after\nthe loss of its disk).\n\nExample:\n  zenith pageserver start",
				Action: daemonAction(func(e *Env, c *cli.Context, _ *Daemon) error {
					return e.startPageserver(c.Context)
				}),
			},
			{
				Name:  "stop",
				Usage: "stop the page server",
				Description: "Stops the repository's page server (running compute nodes then wait for it\n" +
					"to come back before their commits are acknowledged).\n\nExample:\n  zenith pageserver stop",
				Flags: []cli.Flag{&cli.BoolFlag{Name: "immediate", Usage: "kill it instead of stopping it cleanly"}},
				Action: daemonAction(func(e *Env, c *cli.Context, d *Daemon) error {
					return d.Stop(c.Context, c.Bool("immediate"), e.Progress)
				}),
			},
			{
				Name:        "status",
				Usage:       "show whether the page server runs, and its counts",
				Description: "Example:\n  zenith pageserver status",
				Action: daemonAction(func(e *Env, c *cli.Context, d *Daemon) error {
					pid, err := d.PID(e.Progress)
					if errors.Is(err, ErrNotRunning) {
						fmt.Fprintf(e.Out, "page server: stopped\n")
						return nil
					}
					if err != nil {
						return err
					}
					st, err := e.Pageserver().Status(c.Context)
					if err != nil {
						return fmt.Errorf("page server (pid %d) runs but does not answer: %w", pid, err)
					}
					fmt.Fprintf(e.Out, "page server: running, pid %d, %s, %s tenants, %s timelines, up %ss\n",
						pid, e.Config.Pageserver.ListenPG, st["tenants"], st["timelines"], st["uptime_seconds"])
					m := e.pageserverMemory(c.Context)
					fmt.Fprintf(e.Out, "  memory: %s\n", m)
					for _, l := range m.diskLines() {
						fmt.Fprintf(e.Out, "  %s\n", l)
					}
					return nil
				}),
			},
		},
	}
}

// pageserverInitCommand is `zenith pageserver init -D DIR`: a working
// directory with a commented pageserver.toml, for a page server run
// elsewhere (zenith init does this for the repository's own).
func pageserverInitCommand() *cli.Command {
	return &cli.Command{
		Name:  "init",
		Usage: "create a page server working directory with its pageserver.toml",
		Description: `Creates DIR and writes DIR/pageserver.toml: every setting with its default and
a comment, and the addresses given. Then run it with zenith pageserver run -D
DIR (or a systemd unit), and point a repository at it in config.toml
([pageserver] listen_pg, local = false). An existing pageserver.toml is kept.

With token auth and TLS (a repository made with zenith init --auth --tls),
copy that repository's auth_public_key.pem and tls/ files to this host and
name them; the page server's own token for the safekeepers then comes from
$ZENITH_AUTH_TOKEN (zenith token --admin on the repository's host).

Examples:
  zenith pageserver init -D /var/lib/zenith/pageserver --listen-pg 0.0.0.0:64000
  zenith pageserver init -D /var/lib/zenith/pageserver --listen-pg 10.0.0.1:64000 \
      --auth-public-key /etc/zenith/auth_public_key.pem \
      --tls-cert /etc/zenith/server.crt --tls-key /etc/zenith/server.key --tls-ca /etc/zenith/ca.crt`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "D", Usage: "the page server's working `DIR`", Required: true},
			&cli.StringFlag{Name: "listen-pg", Value: DefaultConfig().Pageserver.ListenPG, Usage: "page service address `HOST:PORT`"},
			&cli.StringFlag{Name: "listen-http", Value: DefaultConfig().Pageserver.ListenHTTP, Usage: "HTTP API address `HOST:PORT`"},
			&cli.StringFlag{Name: "pg-bin", Usage: "`DIR` of PostgreSQL 15's programs (default: searched)"},
			&cli.StringFlag{Name: "remote-storage", Usage: "where it uploads layer files and timeline indexes: `URL` file:///absolute/dir or s3://bucket/prefix (default: none)"},
			&cli.StringFlag{Name: "remote-storage-endpoint", Usage: "for s3://: the S3-compatible server's `URL` (default: $AWS_ENDPOINT_URL, or AWS)"},
			&cli.StringFlag{Name: "remote-storage-region", Usage: "for s3://: the bucket's `REGION` (default: $AWS_REGION, or us-east-1)"},
			&cli.StringFlag{Name: "auth-public-key", Usage: "take only tokens signed by the ed25519 key in PEM `FILE`"},
			&cli.StringFlag{Name: "tls-cert", Usage: "serve TLS with the PEM certificate `FILE` (and --tls-key)"},
			&cli.StringFlag{Name: "tls-key", Usage: "the PEM key `FILE` of --tls-cert"},
			&cli.StringFlag{Name: "tls-ca", Usage: "reach the safekeepers over TLS, checking them against the PEM CA `FILE`"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return fmt.Errorf("pageserver init takes no arguments (see zenith pageserver init --help)")
			}
			dir, err := filepath.Abs(c.String("D"))
			if err != nil {
				return err
			}
			if _, err := os.Stat(filepath.Join(dir, pageserver.ConfigFileName)); err == nil {
				return fmt.Errorf("%s exists already: not overwriting it", filepath.Join(dir, pageserver.ConfigFileName))
			}
			cfg := DefaultConfig()
			cfg.Pageserver.ListenPG, cfg.Pageserver.ListenHTTP = c.String("listen-pg"), c.String("listen-http")
			if cfg.PGBinDir, err = pgcluster.FindBinDir(c.Context, c.String("pg-bin")); err != nil {
				return err
			}
			rs := remoteStorageFlags(c, "")
			if err := rs.Validate(); err != nil {
				return fmt.Errorf("--remote-storage: %w", err)
			}
			security := map[string]string{}
			for _, f := range []string{"auth-public-key", "tls-cert", "tls-key", "tls-ca"} {
				if v := c.String(f); v != "" {
					abs, err := filepath.Abs(v)
					if err != nil {
						return fmt.Errorf("--%s: %w", f, err)
					}
					security[strings.ReplaceAll(f, "-", "_")] = abs
				}
			}
			if err := writePageserverConfig(dir, cfg, rs, security); err != nil {
				return err
			}
			fmt.Fprintf(c.App.Writer, "wrote %s\n", filepath.Join(dir, pageserver.ConfigFileName))
			return nil
		},
	}
}

// SafekeeperCommand is `zenith safekeeper start|stop`; the safekeeper's
// own `run` joins it (see Commands).
func SafekeeperCommand() *cli.Command {
	idFlag := &cli.IntFlag{Name: "id", Usage: "only safekeeper `N` (from 1); default all"}
	each := func(f func(e *Env, c *cli.Context, d *Daemon) error) cli.ActionFunc {
		return func(c *cli.Context) error {
			e, err := openEnv(c)
			if err != nil {
				return err
			}
			ds, err := e.safekeeperDaemons(c.Int("id"))
			if err != nil {
				return err
			}
			if len(ds) == 0 && e.Config.Safekeepers.Count == 0 {
				fmt.Fprintf(e.Progress, "this repository has no safekeepers (config.toml safekeepers.count = 0)\n")
			} else if len(ds) == 0 {
				fmt.Fprintf(e.Progress, "none of the %d safekeepers runs on this host (config.toml local = false): manage them on theirs\n", e.Config.Safekeepers.Count)
			}
			for _, d := range ds {
				if err := f(e, c, d); err != nil {
					return err
				}
			}
			return nil
		}
	}
	return &cli.Command{
		Name:  "safekeeper",
		Usage: "manage the safekeepers",
		Subcommands: []*cli.Command{
			{
				Name:        "start",
				Usage:       "start safekeepers in the background",
				Description: "Example:\n  zenith safekeeper start --id 2",
				Flags:       []cli.Flag{idFlag},
				Action: each(func(e *Env, c *cli.Context, d *Daemon) error {
					return d.Start(c.Context, e.Progress)
				}),
			},
			{
				Name:        "stop",
				Usage:       "stop safekeepers",
				Description: "Example:\n  zenith safekeeper stop --id 2",
				Flags:       []cli.Flag{idFlag, &cli.BoolFlag{Name: "immediate", Usage: "kill instead of stopping cleanly"}},
				Action: each(func(e *Env, c *cli.Context, d *Daemon) error {
					return d.Stop(c.Context, c.Bool("immediate"), e.Progress)
				}),
			},
		},
	}
}

// writeJSON prints v as indented JSON.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
