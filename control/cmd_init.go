package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"regexp"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/zenithdb/zenith/pageserver"
	"github.com/zenithdb/zenith/pgwire"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/pgcluster"
	"github.com/zenithdb/zenith/repo/remote"
	"github.com/zenithdb/zenith/repo/vfs"
)

// InitCommand is `zenith init`.
func InitCommand() *cli.Command {
	return &cli.Command{
		Name:  "init",
		Usage: "create a zenith repository: config, page server, default tenant, branch main",
		Description: `Creates the repository directory (./.zenith, or $ZENITH_REPO_DIR) with its
config.toml, the page server's working directory, and a default tenant whose
id is saved so later commands need no --tenant. It runs initdb (as the
postgres OS user when run as root) into a temporary directory and imports it
into the page server as the branch main. The page server runs only while
init needs it: zenith start starts it for good.

An existing repository is never overwritten. If anything fails, init removes
what it created.

Where the services are: by default the page server and the safekeepers all
run here on 127.0.0.1 (--pageserver-port, --safekeeper-port...). On several
hosts, give their addresses instead: --pageserver-addr and --safekeeper-addrs
(each HOST:PORT, where the service listens and is reached). zenith start/stop
run only the services on this host (--local: by default those whose address
this host can listen on); the others run there, e.g. from the units --systemd
writes, and zenith start/stop say so. Compute nodes then must be reachable
from those hosts: --compute-host (their address in connection strings; they
listen on 127.0.0.1 and there unless --compute-listen says otherwise) and
--compute-replication-from (the networks pg_hba.conf trusts for WAL
streaming; otherwise it trusts loopback only).

Remote storage: the page server uploads every layer file and timeline index
to --remote-storage (by default the directory remote_storage inside the
repository); a page server whose directory is lost restores every tenant
from there when it starts. For s3://bucket/prefix, the credentials come
from AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or the AWS shared
config files), the endpoint and region from the flags or AWS_ENDPOINT_URL
and AWS_REGION.

Examples:
  zenith init
  ZENITH_REPO_DIR=/srv/zenith zenith init --pageserver-port 6400 --http-port 9899
  zenith init --safekeepers 3 --safekeeper-port 5454
  zenith init --systemd /etc/systemd/system --systemd-user zenith
  zenith init --remote-storage s3://zenith-layers/prod --remote-storage-endpoint http://10.0.0.5:7070
  zenith init --pageserver-addr 10.0.0.1:64000 \\
      --safekeeper-addrs 10.0.0.1:5454,10.0.0.2:5454,10.0.0.3:5454 \\
      --compute-host 10.0.0.1 --compute-replication-from 10.0.0.0/24 --systemd /tmp/units`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "pg-bin", Usage: "`DIR` of PostgreSQL 15's programs (default: /usr/lib/postgresql/15/bin or pg_config --bindir)"},
			&cli.IntFlag{Name: "safekeepers", Usage: "how many safekeepers (0: computes stream WAL straight to the page server; default: as many as --safekeeper-addrs)"},
			&cli.IntFlag{Name: "safekeeper-port", Value: DefaultConfig().Safekeepers.BasePGPort, Usage: "safekeeper N listens for WAL on 127.0.0.1:`PORT`+N-1"},
			&cli.IntFlag{Name: "safekeeper-http-port", Value: DefaultConfig().Safekeepers.BaseHTTPPort, Usage: "safekeeper N serves HTTP on 127.0.0.1:`PORT`+N-1 (with --safekeeper-addrs: on its host)"},
			&cli.StringFlag{Name: "safekeeper-addrs", Usage: "the safekeepers' WAL service addresses `HOST:PORT,...`, safekeeper 1 first"},
			&cli.StringFlag{Name: "safekeeper-http-addrs", Usage: "their HTTP addresses `HOST:PORT,...` (default: each one's host, --safekeeper-http-port+N-1)"},
			&cli.IntFlag{Name: "pageserver-port", Value: 64000, Usage: "`PORT` of the page server's page service on 127.0.0.1"},
			&cli.IntFlag{Name: "http-port", Value: 9898, Usage: "`PORT` of the page server's HTTP API on 127.0.0.1"},
			&cli.StringFlag{Name: "pageserver-addr", Usage: "the page server's page service at `HOST:PORT` (instead of --pageserver-port)"},
			&cli.StringFlag{Name: "pageserver-http-addr", Usage: "its HTTP API at `HOST:PORT` (default: its host, --http-port)"},
			&cli.StringFlag{Name: "local", Value: "auto", Usage: "`WHICH` services run on this host: auto (those at an address of this host), all, none, or a list such as pageserver,safekeeper-1"},
			&cli.StringFlag{Name: "compute-host", Value: DefaultConfig().Compute.AdvertiseHost, Usage: "`HOST` at which computes are reached (connection strings; the page server's and safekeepers' too)"},
			&cli.StringFlag{Name: "compute-listen", Usage: "computes' listen_addresses, `HOSTS` comma separated (default: 127.0.0.1 and --compute-host)"},
			&cli.StringFlag{Name: "compute-replication-from", Usage: "`CIDR,...` networks whose hosts may stream WAL from computes without a password (the page server's and safekeepers' hosts)"},
			&cli.StringFlag{Name: "remote-storage", Usage: "where the page server uploads layer files and timeline indexes: `URL` file:///absolute/dir or s3://bucket/prefix (default: file://REPO/remote_storage, inside the repository)"},
			&cli.StringFlag{Name: "remote-storage-endpoint", Usage: "for s3://: the S3-compatible server's `URL` (default: $AWS_ENDPOINT_URL, or AWS)"},
			&cli.StringFlag{Name: "remote-storage-region", Usage: "for s3://: the bucket's `REGION` (default: $AWS_REGION, or us-east-1)"},
			&cli.StringFlag{Name: "systemd", Usage: "also write systemd unit files for the page server and safekeepers to `DIR`"},
			&cli.StringFlag{Name: "systemd-user", Value: DefaultSystemdUser, Usage: "the units run zenith as OS user `NAME` (the repository must belong to it)"},
			&cli.BoolFlag{Name: "auth", Usage: "services take only tokens signed by the repository's ed25519 key (auth_private_key.pem, 0600); zenith token prints one"},
			&cli.BoolFlag{Name: "tls", Usage: "services speak TLS with a certificate of a local CA made in tls/ (ca.crt for clients: sslrootcert)"},
		},
		Action: runInit,
	}
}

func runInit(c *cli.Context) (err error) {
	if c.NArg() > 0 {
		return fmt.Errorf("init takes no arguments (see zenith init --help)")
	}
	ctx := c.Context
	dir, err := RepoDir()
	if err != nil {
		return err
	}
	if _, err := os.Stat(dir); err == nil {
		return fmt.Errorf("%s exists already: zenith init never overwrites a repository; remove it, or set %s to another directory", dir, RepoDirEnv)
	}
	cfg := DefaultConfig()
	if cfg.PGBinDir, err = pgcluster.FindBinDir(ctx, c.String("pg-bin")); err != nil {
		return err
	}
	if err := initAddresses(c, &cfg); err != nil {
		return err
	}
	rs := remoteStorageFlags(c, "file://"+filepath.Join(dir, "remote_storage"))
	if err := rs.Validate(); err != nil {
		return fmt.Errorf("--remote-storage: %w", err)
	}
	cfg.DefaultTenant = id.NewTenantID() // replaced by the page server's answer
	cfg.Security = SecurityConfig{Auth: c.Bool("auth"), TLS: c.Bool("tls")}
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	if err := checkComputeReachable(cfg); err != nil {
		return err
	}
	if err := checkLocalAddrsFree(cfg); err != nil {
		return err
	}

	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create repository: %w", err)
	}
	e := &Env{Dir: dir, Config: cfg, Out: c.App.Writer, Progress: c.App.ErrWriter}
	ps := e.pageserverDaemon()
	defer func() {
		if err != nil {
			stopCtx, cancel := context.WithTimeout(context.Background(), daemonStopTimeout)
			defer cancel()
			if cfg.Pageserver.Local {
				_ = ps.Stop(stopCtx, true, io.Discard)
			}
			os.RemoveAll(dir)
		}
	}()
	user, err := pgcluster.ServerUser()
	if err != nil {
		return err
	}
	// Compute nodes live under pgdatadirs: find out now, not at the first
	// pg start, if the PostgreSQL OS user cannot reach it.
	if err := pgcluster.PrepareDir(filepath.Join(dir, "pgdatadirs"), user); err != nil {
		return fmt.Errorf("the repository must be reachable by PostgreSQL: %w", err)
	}
	if err := initSecurity(e); err != nil {
		return err
	}
	if cfg.Pageserver.Local {
		if err := writePageserverConfig(e.PageserverDir(), cfg, rs, e.pageserverSecurity()); err != nil {
			return err
		}
		if err := ps.Start(ctx, e.Progress); err != nil {
			return err
		}
	} else if err := e.Pageserver().Ping(ctx); err != nil {
		return fmt.Errorf("the page server at %s runs on another host and must run before zenith init: %w", cfg.Pageserver.ListenPG, err)
	}
	tenant, err := e.createTenant(ctx, id.TenantID{})
	if err != nil {
		return fmt.Errorf("create the default tenant: %w", err)
	}
	e.Config.DefaultTenant = tenant
	if err := importInitdb(ctx, e, tenant, "main"); err != nil {
		return err
	}
	if cfg.Pageserver.Local {
		if err := ps.Stop(ctx, false, e.Progress); err != nil {
			return err
		}
	}
	b, err := encodeConfig(e.Config)
	if err != nil {
		return err
	}
	if _, err := vfs.WriteFileAtomic(vfs.Default, filepath.Join(dir, ConfigFileName), b, 0o644); err != nil {
		return err
	}
	if sd := c.String("systemd"); sd != "" {
		if err := writeSystemdUnits(e, sd, c.String("systemd-user")); err != nil {
			return err
		}
		fmt.Fprintf(e.Progress, "the units run as OS user %s: it must own %s (chown -R %s: %s)\n",
			c.String("systemd-user"), dir, c.String("systemd-user"), dir)
	}
	fmt.Fprintf(e.Out, "initialized zenith repository %s\ndefault tenant %s, branch main\n", dir, tenant)
	for _, r := range e.remoteServices() {
		fmt.Fprintf(e.Out, "%s at %s: on another host, run it there (zenith start leaves it alone)\n", r.Name, r.Addr)
	}
	fmt.Fprintf(e.Out, "next: zenith start, then zenith pg start main\n")
	return nil
}

// remoteStorageFlags reads --remote-storage and its endpoint and region;
// def is the URL without the flag.
func remoteStorageFlags(c *cli.Context, def string) remote.Config {
	rs := remote.Config{URL: c.String("remote-storage"), Endpoint: c.String("remote-storage-endpoint"), Region: c.String("remote-storage-region")}
	if rs.URL == "" {
		rs.URL = def
	}
	return rs
}

// writePageserverConfig creates the page server's working directory with
// the sample pageserver.toml, set to the configured addresses, PostgreSQL
// and remote storage, and checks that the page server will accept it.
//
// security are the settings of token auth and TLS (pageserverSecurity).
func writePageserverConfig(dir string, cfg Config, rs remote.Config, security map[string]string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create page server directory: %w", err)
	}
	text := pageserver.SampleConfig
	settings := map[string]string{
		"listen_pg":   cfg.Pageserver.ListenPG,
		"listen_http": cfg.Pageserver.ListenHTTP,
		"pg_bin_dir":  cfg.PGBinDir,
		"url":         rs.URL,
		"endpoint":    rs.Endpoint,
		"region":      rs.Region,
	}
	for k, v := range security {
		settings[k] = v
	}
	for key, value := range settings {
		re := regexp.MustCompile(`(?m)^` + key + ` = .*$`)
		if !re.MatchString(text) {
			return fmt.Errorf("the page server's sample config has no %s setting", key)
		}
		text = re.ReplaceAllLiteralString(text, fmt.Sprintf("%s = %q", key, value))
	}
	path := filepath.Join(dir, pageserver.ConfigFileName)
	if _, err := vfs.WriteFileAtomic(vfs.Default, path, []byte(text), 0o644); err != nil {
		return err
	}
	if _, err := pageserver.LoadConfig(path); err != nil {
		return fmt.Errorf("page server config zenith wrote: %w", err)
	}
	return nil
}

// importInitdb runs initdb into a temporary directory and imports it into
// the page server as tenant t's branch name.
func importInitdb(ctx context.Context, e *Env, t id.TenantID, name string) error {
	tmp, err := os.MkdirTemp("", "zenith-initdb-")
	if err != nil {
		return fmt.Errorf("initdb: %w", err)
	}
	defer os.RemoveAll(tmp)
	if err := os.Chmod(tmp, 0o755); err != nil {
		return fmt.Errorf("initdb: %w", err)
	}
	cl, err := pgcluster.New(ctx, pgcluster.Options{BinDir: e.Config.PGBinDir, DataDir: filepath.Join(tmp, "pgdata")})
	if err != nil {
		return err
	}
	fmt.Fprintf(e.Progress, "running initdb\n")
	// No fsync: the page server makes the import durable.
	if err := cl.InitDB(ctx, pgcluster.InitOptions{NoSync: true}); err != nil {
		return err
	}
	start := time.Now()
	pr, pw := io.Pipe()
	go func() { pw.CloseWithError(tarDir(pw, cl.DataDir())) }()
	prog := newProgress(e.Progress, "importing "+name, 0)
	if err := e.Pageserver().Import(ctx, t, name, io.TeeReader(pr, prog)); err != nil {
		pr.CloseWithError(err)
		var pe *PageserverError
		if errors.As(err, &pe) && pe.Code == pgwire.CodeDuplicateObject {
			return fmt.Errorf("import %s: %w", name, err)
		}
		return fmt.Errorf("import initdb's data directory as branch %s: %w", name, err)
	}
	prog.Done()
	fmt.Fprintf(e.Progress, "imported initdb's data directory as branch %s (%s in %v)\n", name, formatBytes(prog.Bytes()), time.Since(start).Round(time.Millisecond))
	return nil
}
