package control

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

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
	Safekeepers   SafekeeperConfig `toml:"safekeepers" comment:"The safekeepers (count 0: computes stream WAL to the page server directly)."`
	Compute       ComputeConfig    `toml:"compute" comment:"Compute nodes: where they listen, and how the page server and safekeepers reach them."`
	Security      SecurityConfig   `toml:"security" comment:"Token auth and TLS of the services (zenith init --auth --tls)."`
}

// PageserverConfig says how to reach the page server.
type PageserverConfig struct {
	ListenPG   string `toml:"listen_pg" comment:"Address of its page service (libpq protocol), host:port: where it listens and where it is reached."`
	ListenHTTP string `toml:"listen_http" comment:"Address of its HTTP API, host:port."`
	Local      bool   `toml:"local" comment:"true: zenith start/stop run it from this repository's pageserver/ directory; false: it runs elsewhere and is only talked to."`
}

// SafekeeperConfig says where the safekeepers are. Without Nodes they all
// run here on 127.0.0.1: safekeeper N (1-based) listens on BasePGPort+N-1
// and BaseHTTPPort+N-1. With Nodes, safekeeper N is Nodes[N-1], on any
// host, and the base ports are not used.
type SafekeeperConfig struct {
	Count        int              `toml:"count" comment:"How many safekeepers (0 to 9; an odd number tolerates the most failures)."`
	BasePGPort   int              `toml:"base_pg_port" comment:"Without [[safekeepers.node]]: safekeeper N listens for WAL on 127.0.0.1, port base_pg_port + N - 1."`
	BaseHTTPPort int              `toml:"base_http_port" comment:"Without [[safekeepers.node]]: safekeeper N serves HTTP on 127.0.0.1, port base_http_port + N - 1."`
	Nodes        []SafekeeperNode `toml:"node,omitempty" comment:"Safekeeper N's addresses, in order from 1 (count tables)."`
}

// SafekeeperNode is one safekeeper's addresses: where it listens, which is
// also where the control plane, the page server and its peers reach it.
type SafekeeperNode struct {
	ListenPG   string `toml:"listen_pg" comment:"WAL service (libpq protocol), host:port."`
	ListenHTTP string `toml:"listen_http" comment:"HTTP API (status, commit LSN for its peers), host:port."`
	Local      bool   `toml:"local" comment:"true: zenith start/stop run it from this repository; false: it runs on another host (e.g. as a systemd unit) and is only talked to."`
}

// ComputeConfig says how compute nodes are reached. A compute's pg_hba.conf
// trusts loopback only unless ReplicationNetworks names more.
type ComputeConfig struct {
	ListenAddresses string   `toml:"listen_addresses" comment:"PostgreSQL listen_addresses of compute nodes (a comma-separated list of hosts; loopback only by default)."`
	AdvertiseHost   string   `toml:"advertise_host" comment:"Host in a compute's connection string: where users, the page server and the safekeepers reach it. Must be one of listen_addresses (or they '*')."`
	ReplicationFrom []string `toml:"replication_from" comment:"Networks (CIDR, e.g. 10.0.0.0/24) whose hosts may stream WAL from computes without a password: those of a page server or safekeepers on other hosts. Empty: loopback only."`
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
		Compute:     ComputeConfig{ListenAddresses: "127.0.0.1", AdvertiseHost: "127.0.0.1"},
	}
}

// SafekeeperList returns every safekeeper's addresses, safekeeper N at
// index N-1: Safekeepers.Nodes, or the loopback layout of the base ports.
func (c *Config) SafekeeperList() []SafekeeperNode {
	sk := c.Safekeepers
	if len(sk.Nodes) > 0 {
		return sk.Nodes
	}
	nodes := make([]SafekeeperNode, sk.Count)
	for i := range nodes {
		nodes[i] = SafekeeperNode{
			ListenPG:   net.JoinHostPort("127.0.0.1", strconv.Itoa(sk.BasePGPort+i)),
			ListenHTTP: net.JoinHostPort("127.0.0.1", strconv.Itoa(sk.BaseHTTPPort+i)),
			Local:      true,
		}
	}
	return nodes
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
	if len(sk.Nodes) > 0 {
		if err := validateSafekeeperNodes(sk); err != nil {
			return err
		}
	} else if sk.Count > 0 {
		for _, p := range []struct {
			name string
			port int
		}{{"safekeepers.base_pg_port", sk.BasePGPort}, {"safekeepers.base_http_port", sk.BaseHTTPPort}} {
			if p.port < 1 || p.port+sk.Count-1 > 65535 {
				return fmt.Errorf("%s = %d: want a port such that all %d safekeepers' ports are in 1-65535", p.name, p.port, sk.Count)
			}
		}
	}
	if err := c.Compute.validate(); err != nil {
		return err
	}
	if c.DefaultTenant.IsZero() {
		return errors.New("default_tenant is not set: the repository was not initialized completely; remove it and run zenith init again")
	}
	return nil
}

// validateSafekeeperNodes checks [[safekeepers.node]]: count tables, each
// with two valid addresses that no other safekeeper uses.
func validateSafekeeperNodes(sk SafekeeperConfig) error {
	if len(sk.Nodes) != sk.Count {
		return fmt.Errorf("safekeepers.count = %d, but there are %d [[safekeepers.node]] tables: make them agree", sk.Count, len(sk.Nodes))
	}
	seen := map[string]string{}
	for i, n := range sk.Nodes {
		for _, a := range []struct{ key, addr string }{{"listen_pg", n.ListenPG}, {"listen_http", n.ListenHTTP}} {
			name := fmt.Sprintf("safekeepers.node[%d].%s", i+1, a.key)
			if _, err := parsePort(a.addr); err != nil {
				return fmt.Errorf("%s = %q: %w", name, a.addr, err)
			}
			if other, ok := seen[a.addr]; ok {
				return fmt.Errorf("%s = %q: %s has that address already", name, a.addr, other)
			}
			seen[a.addr] = name
		}
	}
	return nil
}

// validate checks the [compute] settings.
func (c ComputeConfig) validate() error {
	hosts := c.ListenHosts()
	if len(hosts) == 0 {
		return fmt.Errorf("compute.listen_addresses = %q: want at least one host, e.g. 127.0.0.1", c.ListenAddresses)
	}
	for _, h := range hosts {
		if h == "" || strings.ContainsAny(h, " \t'\"/:") && net.ParseIP(h) == nil {
			return fmt.Errorf("compute.listen_addresses = %q: %q is not a host name or IP address", c.ListenAddresses, h)
		}
	}
	if c.AdvertiseHost == "" || strings.ContainsAny(c.AdvertiseHost, " \t'\"/@?") || c.AdvertiseHost == "*" {
		return fmt.Errorf("compute.advertise_host = %q: want the host name or IP address at which computes are reached", c.AdvertiseHost)
	}
	if !c.listensOn(c.AdvertiseHost) {
		return fmt.Errorf("compute.advertise_host = %q: computes do not listen there (compute.listen_addresses = %q)", c.AdvertiseHost, c.ListenAddresses)
	}
	for i, n := range c.ReplicationFrom {
		if _, _, err := net.ParseCIDR(n); err != nil {
			return fmt.Errorf("compute.replication_from[%d] = %q: want a network such as 10.0.0.0/24 (%v)", i+1, n, err)
		}
	}
	return nil
}

// ListenHosts are the hosts of ListenAddresses.
func (c ComputeConfig) ListenHosts() []string {
	var hosts []string
	for _, h := range strings.Split(c.ListenAddresses, ",") {
		if h = strings.TrimSpace(h); h != "" {
			hosts = append(hosts, h)
		}
	}
	return hosts
}

// listensOn reports whether a compute listening on ListenAddresses
// accepts connections to host.
func (c ComputeConfig) listensOn(host string) bool {
	for _, h := range c.ListenHosts() {
		if h == "*" || h == "0.0.0.0" && net.ParseIP(host).To4() != nil || h == "::" || h == host {
			return true
		}
	}
	return false
}

// LoopbackOnly reports whether computes listen on loopback addresses only.
func (c ComputeConfig) LoopbackOnly() bool {
	for _, h := range c.ListenHosts() {
		if !isLoopbackHost(h) {
			return false
		}
	}
	return true
}

// isLoopbackHost reports whether host is localhost or a loopback IP.
func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
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
