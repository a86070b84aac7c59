package control

import (
	"bytes"
	"errors"
	"fmt"
	"net"

	"github.com/pelletier/go-toml/v2"

	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/tomlconf"
)

// RepoDirEnv names the environment variable that overrides the repository
// directory.
const RepoDirEnv = "ZENITH_REPO_DIR"

// DefaultRepoDir is the repository directory when RepoDirEnv is not set,
// relative to the working directory.
const DefaultRepoDir = ".zenith"

// ConfigFileName is the control plane's config file in the repository
// directory.
const ConfigFileName = "config.toml"

// MaxSafekeepers bounds Config.Safekeepers.Count.
const MaxSafekeepers = 9

// Config is the repository's config.toml: where PostgreSQL is, how to
// reach the page server, the safekeepers, and the default tenant.
type Config struct {
	PGBinDir      string           `toml:"pg_bin_dir" comment:"Directory of PostgreSQL 15's programs (postgres, initdb, pg_controldata)."`
	DefaultTenant id.TenantID      `toml:"default_tenant" comment:"Tenant that commands use when no --tenant is given (created by zenith init)."`
	Pageserver    PageserverConfig `toml:"pageserver" comment:"The page server: its addresses, and whether zenith start/stop run it here."`
	Safekeepers   SafekeeperConfig `toml:"safekeepers" comment:"The safekeepers that zenith start/stop run here (count 0: computes stream WAL to the page server directly)."`
}

// PageserverConfig says how to reach the page server.
type PageserverConfig struct {
	ListenPG   string `toml:"listen_pg" comment:"Address of its page service (libpq protocol), host:port."`
	ListenHTTP string `toml:"listen_http" comment:"Address of its HTTP API, host:port."`
	Local      bool   `toml:"local" comment:"true: zenith start/stop run it from this repository's pageserver/ directory; false: it runs elsewhere and is only talked to."`
}

// SafekeeperConfig says how many safekeepers run here and on which ports:
// safekeeper N (1-based) listens on BasePGPort+N-1 and BaseHTTPPort+N-1.
type SafekeeperConfig struct {
	Count        int `toml:"count" comment:"How many safekeepers (0 to 9; an odd number tolerates the most failures)."`
	BasePGPort   int `toml:"base_pg_port" comment:"Safekeeper N listens for WAL on base_pg_port + N - 1."`
	BaseHTTPPort int `toml:"base_http_port" comment:"Safekeeper N serves HTTP on base_http_port + N - 1."`
}

// DefaultConfig is the configuration zenith init starts from.
func DefaultConfig() Config {
	return Config{
		Pageserver: PageserverConfig{
			ListenPG:   "127.0.0.1:64000",
			ListenHTTP: "127.0.0.1:9898",
			Local:      true,
		},
		Safekeepers: SafekeeperConfig{BasePGPort: 5454, BaseHTTPPort: 7676},
	}
}

// Validate checks every setting and names the first bad one.
func (c *Config) Validate() error {
	for _, a := range []struct{ name, addr string }{
		{"pageserver.listen_pg", c.Pageserver.ListenPG},
		{"pageserver.listen_http", c.Pageserver.ListenHTTP},
	} {
		if _, err := parsePort(a.addr); err != nil {
			return fmt.Errorf("%s = %q: %w", a.name, a.addr, err)
		}
	}
	sk := c.Safekeepers
	if sk.Count < 0 || sk.Count > MaxSafekeepers {
		return fmt.Errorf("safekeepers.count = %d: want 0 to %d", sk.Count, MaxSafekeepers)
	}
	if sk.Count > 0 {
		for _, p := range []struct {
			name string
			port int
		}{{"safekeepers.base_pg_port", sk.BasePGPort}, {"safekeepers.base_http_port", sk.BaseHTTPPort}} {
			if p.port < 1 || p.port+sk.Count-1 > 65535 {
				return fmt.Errorf("%s = %d: want a port such that all %d safekeepers' ports are in 1-65535", p.name, p.port, sk.Count)
			}
		}
	}
	if c.DefaultTenant.IsZero() {
		return errors.New("default_tenant is not set: the repository was not initialized completely; remove it and run zenith init again")
	}
	return nil
}

// parsePort checks that addr is host:port and returns the port.
func parsePort(addr string) (int, error) {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0, fmt.Errorf("want host:port (%v)", err)
	}
	port, err := net.LookupPort("tcp", p)
	if err != nil || port < 1 {
		return 0, fmt.Errorf("want a port number 1-65535, got %q", p)
	}
	return port, nil
}

// encodeConfig renders c as commented TOML.
func encodeConfig(c Config) ([]byte, error) {
	var buf bytes.Buffer
	buf.WriteString("# Zenith control-plane configuration, written by zenith init.\n# An unknown setting is an error.\n\n")
	enc := toml.NewEncoder(&buf)
	enc.SetIndentTables(false)
	if err := enc.Encode(c); err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	return buf.Bytes(), nil
}

// decodeConfig parses config.toml text strictly over DefaultConfig and
// validates it. name is used in messages.
func decodeConfig(name string, b []byte) (Config, error) {
	cfg := DefaultConfig()
	if err := tomlconf.DecodeStrict(name, b, &cfg); err != nil {
		return cfg, err
	}
	if err := cfg.Validate(); err != nil {
		return cfg, fmt.Errorf("%s: %w", name, err)
	}
	return cfg, nil
}
