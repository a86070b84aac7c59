package control

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"syscall"

	"github.com/urfave/cli/v2"

	"github.com/zenithdb/zenith/pageserver"
	"github.com/zenithdb/zenith/repo/auth"
)

// execWithRuntimeSettings executes the page server again with the
// runtime settings it runs with (pageserver.RuntimeEnviron), which the Go
// runtime reads only at start, unless it has them already. It returns
// only if it did not exec: nil if the settings were there, the error
// otherwise (the page server then runs without them).
func execWithRuntimeSettings() error {
	env, changed := pageserver.RuntimeEnviron(os.Environ())
	if !changed {
		return nil
	}
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	return syscall.Exec(exe, os.Args, env)
}

// pageserverRunCommand is `zenith pageserver run -D DIR`: the page server
// in the foreground, as a systemd unit or `zenith start` runs it.
func pageserverRunCommand() *cli.Command {
	return &cli.Command{
		Name:  "pageserver",
		Usage: "the page server: run it, or manage the local one",
		Subcommands: []*cli.Command{{
			Name:      "run",
			Usage:     "run the page server in the foreground until SIGINT or SIGTERM",
			ArgsUsage: " ",
			Description: `Runs the page server whose working directory is DIR: it keeps every tenant's
timelines under DIR/tenants, pulls WAL from the computes it is pointed at
(callmemaybe), and answers the page service (libpq protocol: tenant_create,
import, branch_create, basebackup, pagestream...) and the HTTP API (/v1/...,
/metrics). It writes nothing outside DIR.

Settings come from DIR/pageserver.toml (every setting and its default:
zenith pageserver init writes a commented one; without the file the defaults
apply); --listen-pg and --listen-http override its addresses. The log goes to
stderr, as JSON or for a person per the file's log_format.

At start it executes itself again with GODEBUG=schedtrace=2147483647 added,
a Go runtime setting that keeps the runtime's monitor thread from deep sleep
between requests (less CPU per single-page request; the trace itself is
printed at most once every 24.8 days); a GODEBUG that sets schedtrace is kept.

SIGINT or SIGTERM stops it cleanly: listeners close, WAL receivers stop, and
what is in memory is flushed to DIR before it exits with status 0.

Examples:
  zenith pageserver run -D .zenith/pageserver
  zenith pageserver run -D /var/lib/zenith/pageserver --listen-pg 0.0.0.0:64000
  psql -h 127.0.0.1 -p 64000 -c tenant_list`,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "D", Aliases: []string{"workdir"}, Usage: "the page server's working `DIR`", Required: true},
				&cli.StringFlag{Name: "listen-pg", Usage: "serve the page service on `HOST:PORT` (default: listen_pg of pageserver.toml)"},
				&cli.StringFlag{Name: "listen-http", Usage: "serve the HTTP API on `HOST:PORT` (default: listen_http of pageserver.toml)"},
			},
			Action: runPageserver,
		}},
	}
}

func runPageserver(c *cli.Context) error {
	execErr := execWithRuntimeSettings()
	if c.NArg() > 0 {
		return fmt.Errorf("pageserver run: unexpected argument %q (see zenith pageserver run --help)", c.Args().First())
	}
	dir, err := filepath.Abs(c.String("D"))
	if err != nil {
		return fmt.Errorf("pageserver run: %w", err)
	}
	if info, err := os.Stat(dir); err != nil || !info.IsDir() {
		return fmt.Errorf("pageserver run: %s is not a directory (create it with zenith pageserver init, or mkdir)", dir)
	}
	cfg, err := pageserverConfig(c, dir)
	if err != nil {
		return fmt.Errorf("pageserver run: %w", err)
	}
	log := daemonLogger(cfg.Log).With().Str("role", "pageserver").Logger()
	if execErr != nil {
		log.Warn().Err(execErr).Msg("running without the page server's GODEBUG setting (pageserver.RuntimeEnviron): single-page requests cost more CPU")
	}
	if limit := pageserver.SetMemoryLimit(cfg); limit > 0 && limit != math.MaxInt64 {
		log.Info().Int64("memory_limit", limit).Msg("Go runtime memory limit (memory_limit, or GOMEMLIMIT)")
	}

	if nofile := pageserver.FileLimit(); nofile > 0 {
		if fit := pageserver.FitOpenFiles(cfg.MaxOpenLayerFiles, nofile); fit != cfg.MaxOpenLayerFiles {
			log.Warn().Int("max_open_layer_files", fit).Int("configured", cfg.MaxOpenLayerFiles).Uint64("file_limit", nofile).
				Msg("max_open_layer_files lowered to fit the file-descriptor limit (RLIMIT_NOFILE), which connections, WAL and redo processes share")
			cfg.MaxOpenLayerFiles = fit
		}
	}

	pgLn, httpLn, err := listenPGAndHTTP(c.Context, cfg.ListenPG, cfg.ListenHTTP)
	if err != nil {
		return fmt.Errorf("pageserver run: %w", err)
	}
	srv, err := pageserver.NewServer(c.Context, dir, cfg, log)
	if err != nil {
		pgLn.Close()
		httpLn.Close()
		return fmt.Errorf("pageserver run: %w", err)
	}
	serve := func(ctx context.Context) error { return srv.Run(ctx, pgLn, httpLn) }
	if err := runUntilSignal(log, serve, nil); err != nil {
		return fmt.Errorf("pageserver run: %w", err)
	}
	return nil
}

// pageserverConfig loads DIR/pageserver.toml (defaults if it is missing)
// and applies the command line's overrides.
func pageserverConfig(c *cli.Context, dir string) (pageserver.Config, error) {
	cfg, err := pageserver.LoadConfig(filepath.Join(dir, pageserver.ConfigFileName))
	if errors.Is(err, fs.ErrNotExist) {
		cfg, err = pageserver.DefaultConfig(), nil
	}
	if err != nil {
		return cfg, err
	}
	if v := c.String("listen-pg"); v != "" {
		cfg.ListenPG = v
	}
	if v := c.String("listen-http"); v != "" {
		cfg.ListenHTTP = v
	}
	cfg.Client = auth.ClientOptions{Token: os.Getenv(AuthTokenEnv), CAFile: cfg.TLSCA}
	return cfg, cfg.Validate()
}
