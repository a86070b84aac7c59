package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/zenithdb/zenith/pageserver"
	"github.com/zenithdb/zenith/pgwire"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/pgcluster"
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

Examples:
  zenith init
  ZENITH_REPO_DIR=/srv/zenith zenith init --pageserver-port 6400 --http-port 9899
  zenith init --safekeepers 3 --safekeeper-port 5454
  zenith init --systemd /etc/systemd/system`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "pg-bin", Usage: "`DIR` of PostgreSQL 15's programs (default: /usr/lib/postgresql/15/bin or pg_config --bindir)"},
			&cli.IntFlag{Name: "safekeepers", Usage: "how many safekeepers zenith start runs (0: computes stream WAL straight to the page server)"},
			&cli.IntFlag{Name: "safekeeper-port", Value: DefaultConfig().Safekeepers.BasePGPort, Usage: "safekeeper N listens for WAL on 127.0.0.1:`PORT`+N-1"},
			&cli.IntFlag{Name: "safekeeper-http-port", Value: DefaultConfig().Safekeepers.BaseHTTPPort, Usage: "safekeeper N serves HTTP on 127.0.0.1:`PORT`+N-1"},
			&cli.IntFlag{Name: "pageserver-port", Value: 64000, Usage: "`PORT` of the page server's page service on 127.0.0.1"},
			&cli.IntFlag{Name: "http-port", Value: 9898, Usage: "`PORT` of the page server's HTTP API on 127.0.0.1"},
			&cli.StringFlag{Name: "systemd", Usage: "also write systemd unit files for the page server and safekeepers to `DIR`"},
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
	cfg.Safekeepers.Count = c.Int("safekeepers")
	cfg.Safekeepers.BasePGPort, cfg.Safekeepers.BaseHTTPPort = c.Int("safekeeper-port"), c.Int("safekeeper-http-port")
	pgPort, httpPort := c.Int("pageserver-port"), c.Int("http-port")
	cfg.Pageserver.ListenPG = net.JoinHostPort("127.0.0.1", strconv.Itoa(pgPort))
	cfg.Pageserver.ListenHTTP = net.JoinHostPort("127.0.0.1", strconv.Itoa(httpPort))
	cfg.DefaultTenant = id.NewTenantID() // replaced by the page server's answer
	if err := cfg.Validate(); err != nil {
		return fmt.Errorf("init: %w", err)
	}
	if pgPort == httpPort {
		return fmt.Errorf("--pageserver-port and --http-port are both %d: give two ports", pgPort)
	}
	for _, p := range []struct {
		flag string
		port int
	}{{"--pageserver-port", pgPort}, {"--http-port", httpPort}} {
		if err := checkPortFree(p.port); err != nil {
			return fmt.Errorf("%s: %w", p.flag, err)
		}
	}
	for n := 1; n <= cfg.Safekeepers.Count; n++ {
		for _, p := range []int{cfg.Safekeepers.BasePGPort + n - 1, cfg.Safekeepers.BaseHTTPPort + n - 1} {
			if err := checkPortFree(p); err != nil {
				return fmt.Errorf("safekeeper %d: %w", n, err)
			}
		}
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
			_ = ps.Stop(stopCtx, true, io.Discard)
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
	if err := writePageserverConfig(e.PageserverDir(), cfg); err != nil {
		return err
	}
	if err := ps.Start(ctx, e.Progress); err != nil {
		return err
	}
	tenant, err := e.Pageserver().TenantCreate(ctx, id.TenantID{})
	if err != nil {
		return fmt.Errorf("create the default tenant: %w", err)
	}
	e.Config.DefaultTenant = tenant
	if err := importInitdb(ctx, e, tenant, "main"); err != nil {
		return err
	}
	if err := ps.Stop(ctx, false, e.Progress); err != nil {
		return err
	}
	b, err := encodeConfig(e.Config)
	if err != nil {
		return err
	}
	if _, err := vfs.WriteFileAtomic(vfs.Default, filepath.Join(dir, ConfigFileName), b, 0o644); err != nil {
		return err
	}
	if sd := c.String("systemd"); sd != "" {
		if err := writeSystemdUnits(e, sd); err != nil {
			return err
		}
	}
	fmt.Fprintf(e.Out, "initialized zenith repository %s\ndefault tenant %s, branch main\nnext: zenith start, then zenith pg start main\n", dir, tenant)
	return nil
}

// writePageserverConfig creates the page server's working directory with
// the sample pageserver.toml, set to the configured addresses and
// PostgreSQL, and checks that the page server will accept it.
func writePageserverConfig(dir string, cfg Config) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("create page server directory: %w", err)
	}
	text := pageserver.SampleConfig
	for key, value := range map[string]string{
		"listen_pg":   cfg.Pageserver.ListenPG,
		"listen_http": cfg.Pageserver.ListenHTTP,
		"pg_bin_dir":  cfg.PGBinDir,
	} {
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
	prog := newProgress(e.Progress, "importing "+name)
	if err := e.Pageserver().Import(ctx, t, name, io.TeeReader(pr, prog)); err != nil {
		pr.CloseWithError(err)
		var pe *PageserverError
		if errors.As(err, &pe) && pe.Code == pgwire.CodeDuplicateObject {
			return fmt.Errorf("import %s: %w", name, err)
		}
		return fmt.Errorf("import initdb's data directory as branch %s: %w", name, err)
	}
	prog.Done()
	fmt.Fprintf(e.Progress, "imported initdb's data directory as branch %s (%s in %v)\n", name, formatBytes(prog.n), time.Since(start).Round(time.Millisecond))
	return nil
}
