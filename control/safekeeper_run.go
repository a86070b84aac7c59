package control

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/urfave/cli/v2"

	"github.com/zenithdb/zenith/repo/auth"
	"github.com/zenithdb/zenith/safekeeper"
)

// safekeeperRunCommand is `zenith safekeeper run -D DIR --id N`: one
// safekeeper in the foreground, as a systemd unit or `zenith start` runs
// it.
func safekeeperRunCommand() *cli.Command {
	return &cli.Command{
		Name:  "safekeeper",
		Usage: "the safekeepers: run one, or manage the local ones",
		Subcommands: []*cli.Command{{
			Name:      "run",
			Usage:     "run a safekeeper in the foreground until SIGINT or SIGTERM",
			ArgsUsage: " ",
			Description: `Runs safekeeper N of a set, keeping the WAL of every tenant/timeline it is
given under DIR/<tenant>/<timeline>/ (a control file and WAL segment files
named as in pg_wal). It writes nothing outside DIR.

On --listen-pg it speaks the libpq protocol: the election commands that
zenith pg start sends before a compute starts (greet, vote, elected), the
compute assignment (compute: the safekeeper then connects to that compute as
the physical replication client safekeeper<N>, slot safekeeper_<N>), and a
walsender for the page server (START_REPLICATION with
options='-c tenant_id=<id> -c timeline_id=<id>') that sends WAL only up to
the commit LSN. On --listen-http: GET /v1/status, /v1/timeline/<tenant>/<timeline>
(JSON), /metrics (Prometheus), and PUT /v1/tenant/<tenant>/pageserver_generation/<n>,
which zenith tenant attach sends before a page server takes generation n.

--peers lists the HTTP addresses of the other safekeepers of the set: the
commit LSN is the flush LSN that a majority of the set has reached, learnt
by polling them. Without peers the safekeeper is a set of one.

With --auth-public-key every client must present a token signed by that
key (the libpq password, HTTP "Authorization: Bearer"): the election
commands need an admin token, reading a timeline's WAL a token for its
tenant; /metrics stays public. Its own token, for its peers, is in
$ZENITH_AUTH_TOKEN. With --tls-cert and --tls-key both listeners speak TLS
(plaintext libpq sessions are refused), and --tls-ca makes it reach its
peers over TLS, checking their certificates.

SIGINT or SIGTERM stops it cleanly: connections close and every timeline's
control file is written before it exits with status 0.

Examples:
  zenith safekeeper run -D .zenith/safekeepers/sk1 --id 1 \
      --listen-pg 127.0.0.1:5454 --listen-http 127.0.0.1:7676 \
      --peers 127.0.0.1:7677,127.0.0.1:7678
  curl -s 127.0.0.1:7676/v1/status`,
			Flags: []cli.Flag{
				&cli.StringFlag{Name: "D", Aliases: []string{"datadir"}, Usage: "the safekeeper's data `DIR` (created if missing)", Required: true},
				&cli.Uint64Flag{Name: "id", Usage: "this safekeeper's number `N` in its set (from 1)", Required: true},
				&cli.StringFlag{Name: "listen-pg", Value: "127.0.0.1:5454", Usage: "serve libpq on `HOST:PORT`"},
				&cli.StringFlag{Name: "listen-http", Value: "127.0.0.1:7676", Usage: "serve HTTP on `HOST:PORT`"},
				&cli.StringSliceFlag{Name: "peers", Usage: "the other safekeepers' HTTP addresses, `HOST:PORT,...`"},
				&cli.StringFlag{Name: "log-format", Value: "json", Usage: "log as `json` or for a person (console)"},
				&cli.StringFlag{Name: "auth-public-key", Usage: "take only tokens signed by the ed25519 key in PEM `FILE` (libpq password, HTTP bearer); its own token for the peers is $" + AuthTokenEnv},
				&cli.StringFlag{Name: "tls-cert", Usage: "serve TLS on both listeners with the PEM certificate `FILE` (and --tls-key)"},
				&cli.StringFlag{Name: "tls-key", Usage: "the PEM key `FILE` of --tls-cert"},
				&cli.StringFlag{Name: "tls-ca", Usage: "check the peers' certificates against the PEM CA `FILE` (and reach them over TLS)"},
			},
			Action: runSafekeeper,
		}},
	}
}

func runSafekeeper(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("safekeeper run: unexpected argument %q (see zenith safekeeper run --help)", c.Args().First())
	}
	if f := c.String("log-format"); f != "json" && f != "console" {
		return fmt.Errorf("safekeeper run: --log-format %q: want json or console", f)
	}
	dir, err := filepath.Abs(c.String("D"))
	if err != nil {
		return fmt.Errorf("safekeeper run: %w", err)
	}
	if c.Uint64("id") == 0 {
		return errors.New("safekeeper run: --id must be at least 1")
	}
	log := daemonLogger(c.String("log-format")).With().Str("role", "safekeeper").Logger()

	pgLn, httpLn, err := listenPGAndHTTP(c.Context, c.String("listen-pg"), c.String("listen-http"))
	if err != nil {
		return fmt.Errorf("safekeeper run: %w", err)
	}
	cfg := safekeeper.Config{ID: c.Uint64("id"), Dir: dir, Peers: c.StringSlice("peers")}
	if err := safekeeperSecurity(c, &cfg); err != nil {
		pgLn.Close()
		httpLn.Close()
		return fmt.Errorf("safekeeper run: %w", err)
	}
	log.Info().Bool("auth", cfg.Verifier != nil).Bool("tls", cfg.TLS != nil).Msg("security")
	sk, err := safekeeper.Open(cfg, log)
	if err != nil {
		pgLn.Close()
		httpLn.Close()
		return fmt.Errorf("safekeeper run: %w", err)
	}
	log.Info().Str("dir", dir).Str("listen_pg", pgLn.Addr().String()).Str("listen_http", httpLn.Addr().String()).
		Strs("peers", c.StringSlice("peers")).Msg("safekeeper started")
	serve := func(ctx context.Context) error { return sk.Run(ctx, pgLn, httpLn) }
	if err := runUntilSignal(log, serve, sk.Close); err != nil {
		return fmt.Errorf("safekeeper run: %w", err)
	}
	return nil
}

// safekeeperSecurity sets cfg's token check, TLS and what it presents to
// its peers from c's flags and the environment.
func safekeeperSecurity(c *cli.Context, cfg *safekeeper.Config) error {
	var err error
	if f := c.String("auth-public-key"); f != "" {
		if cfg.Verifier, err = auth.LoadVerifier(f); err != nil {
			return fmt.Errorf("--auth-public-key: %w", err)
		}
	}
	if (c.String("tls-cert") == "") != (c.String("tls-key") == "") {
		return errors.New("--tls-cert and --tls-key: give both or neither")
	}
	if f := c.String("tls-cert"); f != "" {
		if cfg.TLS, err = auth.ServerTLS(f, c.String("tls-key")); err != nil {
			return err
		}
	}
	cfg.Client = auth.ClientOptions{Token: os.Getenv(AuthTokenEnv), CAFile: c.String("tls-ca")}
	return nil
}
