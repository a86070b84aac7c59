package control

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"sync"

	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"

	"github.com/zenithdb/zenith/repo/auth"
	"github.com/zenithdb/zenith/repo/id"
)

// Env is a zenith repository directory (.zenith) and its config: what
// every command but init works on.
type Env struct {
	// Dir is the repository directory, absolute.
	Dir string
	// Config is Dir's config.toml.
	Config Config
	// Out is where results go (stdout); Progress is where progress and
	// notes go (stderr).
	Out, Progress io.Writer
	// Log is the command's own log ($ZENITH_LOG; disabled by default):
	// timings and decisions a person debugging a slow or odd command
	// wants, not its output.
	Log zerolog.Logger

	// binCheck, once closed, says the check of the PostgreSQL programs
	// begun ahead of need is over (checkPostgresAhead); nil if none was.
	binCheck chan struct{}

	// client is what this command presents to the services, made once.
	clientOnce sync.Once
	client     auth.ClientOptions
	clientErr  error
}

// RepoDir returns the repository directory: $ZENITH_REPO_DIR, or .zenith
// in the working directory, made absolute.
func RepoDir() (string, error) {
	dir := os.Getenv(RepoDirEnv)
	if dir == "" {
		dir = DefaultRepoDir
	}
	abs, err := filepath.Abs(dir)
	if err != nil {
		return "", fmt.Errorf("repository directory %s: %w", dir, err)
	}
	return abs, nil
}

// openEnv loads the repository for command c.
func openEnv(c *cli.Context) (*Env, error) {
	dir, err := RepoDir()
	if err != nil {
		return nil, err
	}
	b, err := os.ReadFile(filepath.Join(dir, ConfigFileName))
	if errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("no zenith repository in %s: run zenith init first (or set %s to the repository directory)", dir, RepoDirEnv)
	}
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg, err := decodeConfig(filepath.Join(dir, ConfigFileName), b)
	if err != nil {
		return nil, err
	}
	return &Env{Dir: dir, Config: cfg, Out: c.App.Writer, Progress: c.App.ErrWriter, Log: cliLogger()}, nil
}

// PageserverDir is the page server's working directory, when it runs
// here (Config.Pageserver.Local).
func (e *Env) PageserverDir() string { return filepath.Join(e.Dir, "pageserver") }

// SafekeeperDir is safekeeper n's data directory (n from 1).
func (e *Env) SafekeeperDir(n int) string {
	return filepath.Join(e.Dir, "safekeepers", "sk"+strconv.Itoa(n))
}

// TenantNodesDir holds the compute nodes of a tenant.
func (e *Env) TenantNodesDir(t id.TenantID) string {
	return filepath.Join(e.Dir, "pgdatadirs", "tenants", t.String())
}

// Pageserver is a client of the configured page server.
func (e *Env) Pageserver() *PageserverClient {
	o, err := e.cliClient()
	return &PageserverClient{Addr: e.Config.Pageserver.ListenPG, Client: o, clientErr: err}
}

// cliClient is what this command presents to the services (clientOptions),
// made at the first call.
func (e *Env) cliClient() (auth.ClientOptions, error) {
	e.clientOnce.Do(func() { e.client, e.clientErr = e.clientOptions() })
	return e.client, e.clientErr
}

// tenant returns the tenant of command c: its --tenant flag, or the
// repository's default tenant.
func (e *Env) tenant(c *cli.Context) (id.TenantID, error) {
	s := c.String("tenant")
	if s == "" {
		return e.Config.DefaultTenant, nil
	}
	t, err := id.ParseTenantID(s)
	if err != nil {
		return t, fmt.Errorf("--tenant %q: %w (tenant ids are 32 hex characters; zenith tenant list shows them)", s, err)
	}
	return t, nil
}

// tenantFlag is the --tenant flag every tenant-scoped command takes.
func tenantFlag() cli.Flag {
	return &cli.StringFlag{Name: "tenant", Usage: "work on tenant `ID` instead of the repository's default tenant"}
}
