package control

import (
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/urfave/cli/v2"
)

// initAddresses sets cfg's service and compute addresses from zenith
// init's flags: the loopback ports of one host by default, or the
// HOST:PORT lists of several, and which of the services run here.
func initAddresses(c *cli.Context, cfg *Config) error {
	if err := initPageserverAddrs(c, cfg); err != nil {
		return err
	}
	if err := initSafekeeperAddrs(c, cfg); err != nil {
		return err
	}
	if err := initLocal(c.String("local"), cfg); err != nil {
		return err
	}
	host := c.String("compute-host")
	cfg.Compute.AdvertiseHost = host
	cfg.Compute.ListenAddresses = c.String("compute-listen")
	if cfg.Compute.ListenAddresses == "" {
		cfg.Compute.ListenAddresses = "127.0.0.1"
		if host != "127.0.0.1" {
			cfg.Compute.ListenAddresses += "," + host
		}
	}
	cfg.Compute.ReplicationFrom = splitList(c.String("compute-replication-from"))
	return nil
}

// initPageserverAddrs sets the page server's addresses from
// --pageserver-addr/--pageserver-http-addr, or the loopback ports.
func initPageserverAddrs(c *cli.Context, cfg *Config) error {
	addr := c.String("pageserver-addr")
	if addr == "" {
		if c.IsSet("pageserver-http-addr") {
			return fmt.Errorf("--pageserver-http-addr needs --pageserver-addr")
		}
		pgPort, httpPort := c.Int("pageserver-port"), c.Int("http-port")
		if pgPort == httpPort {
			return fmt.Errorf("--pageserver-port and --http-port are both %d: give two ports", pgPort)
		}
		cfg.Pageserver.ListenPG = net.JoinHostPort("127.0.0.1", strconv.Itoa(pgPort))
		cfg.Pageserver.ListenHTTP = net.JoinHostPort("127.0.0.1", strconv.Itoa(httpPort))
		return nil
	}
	if c.IsSet("pageserver-port") {
		return fmt.Errorf("--pageserver-port and --pageserver-addr: give one of them")
	}
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("--pageserver-addr %q: want HOST:PORT (%v)", addr, err)
	}
	cfg.Pageserver.ListenPG = addr
	cfg.Pageserver.ListenHTTP = c.String("pageserver-http-addr")
	if cfg.Pageserver.ListenHTTP == "" {
		cfg.Pageserver.ListenHTTP = net.JoinHostPort(host, strconv.Itoa(c.Int("http-port")))
	}
	if cfg.Pageserver.ListenPG == cfg.Pageserver.ListenHTTP {
		return fmt.Errorf("--pageserver-addr and its HTTP address are both %s: give two ports", addr)
	}
	return nil
}

// initSafekeeperAddrs sets the safekeepers from --safekeeper-addrs (and
// --safekeeper-http-addrs), or --safekeepers and the base ports.
func initSafekeeperAddrs(c *cli.Context, cfg *Config) error {
	cfg.Safekeepers.Count = c.Int("safekeepers")
	cfg.Safekeepers.BasePGPort, cfg.Safekeepers.BaseHTTPPort = c.Int("safekeeper-port"), c.Int("safekeeper-http-port")
	addrs := splitList(c.String("safekeeper-addrs"))
	httpAddrs := splitList(c.String("safekeeper-http-addrs"))
	if len(addrs) == 0 {
		if len(httpAddrs) > 0 {
			return fmt.Errorf("--safekeeper-http-addrs needs --safekeeper-addrs")
		}
		return nil
	}
	if c.IsSet("safekeepers") && cfg.Safekeepers.Count != len(addrs) {
		return fmt.Errorf("--safekeepers %d but --safekeeper-addrs lists %d: give one of them", cfg.Safekeepers.Count, len(addrs))
	}
	if c.IsSet("safekeeper-port") {
		return fmt.Errorf("--safekeeper-port and --safekeeper-addrs: give one of them")
	}
	if len(httpAddrs) > 0 && len(httpAddrs) != len(addrs) {
		return fmt.Errorf("--safekeeper-http-addrs lists %d addresses, --safekeeper-addrs %d: give one per safekeeper", len(httpAddrs), len(addrs))
	}
	cfg.Safekeepers.Count = len(addrs)
	cfg.Safekeepers.Nodes = make([]SafekeeperNode, len(addrs))
	for i, a := range addrs {
		host, _, err := net.SplitHostPort(a)
		if err != nil {
			return fmt.Errorf("--safekeeper-addrs: safekeeper %d: %q: want HOST:PORT (%v)", i+1, a, err)
		}
		n := SafekeeperNode{ListenPG: a}
		if len(httpAddrs) > 0 {
			n.ListenHTTP = httpAddrs[i]
		} else {
			n.ListenHTTP = net.JoinHostPort(host, strconv.Itoa(cfg.Safekeepers.BaseHTTPPort+i))
		}
		cfg.Safekeepers.Nodes[i] = n
	}
	return nil
}

// initLocal marks which services run on this host, per --local: auto
// (those at an address this host can listen on), all, none, or a list of
// pageserver and safekeeper-N.
func initLocal(which string, cfg *Config) error {
	var local func(name, addr string) bool
	switch which {
	case "auto":
		local = func(_, addr string) bool { return isHostAddr(addr) }
	case "all":
		local = func(string, string) bool { return true }
	case "none":
		local = func(string, string) bool { return false }
	default:
		names := map[string]bool{}
		for _, n := range splitList(which) {
			names[n] = true
		}
		valid := map[string]bool{"pageserver": true}
		for i := range cfg.SafekeeperList() {
			valid["safekeeper-"+strconv.Itoa(i+1)] = true
		}
		for n := range names {
			if !valid[n] {
				return fmt.Errorf("--local %q: %q is not one of auto, all, none, pageserver, safekeeper-1 to safekeeper-%d", which, n, cfg.Safekeepers.Count)
			}
		}
		local = func(name, _ string) bool { return names[name] }
	}
	cfg.Pageserver.Local = local("pageserver", cfg.Pageserver.ListenPG)
	if len(cfg.Safekeepers.Nodes) == 0 {
		if which == "auto" || which == "all" {
			return nil // the loopback layout: every safekeeper runs here
		}
		// Make the layout explicit, to say which run here.
		cfg.Safekeepers.Nodes = cfg.SafekeeperList()
	}
	for i := range cfg.Safekeepers.Nodes {
		n := &cfg.Safekeepers.Nodes[i]
		n.Local = local("safekeeper-"+strconv.Itoa(i+1), n.ListenPG)
	}
	return nil
}

// isHostAddr reports whether this host can listen on addr's host: it is
// one of this host's addresses (any port will do to find out).
func isHostAddr(addr string) bool {
	host, _, err := net.SplitHostPort(addr)
	if err != nil {
		return false
	}
	l, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return false
	}
	l.Close()
	return true
}

// checkComputeReachable fails when a service on another, non-loopback
// host would be told to connect to computes at a loopback address.
func checkComputeReachable(cfg Config) error {
	if !isLoopbackHost(cfg.Compute.AdvertiseHost) {
		return nil
	}
	for _, r := range (&Env{Config: cfg}).remoteServices() {
		host, _, _ := net.SplitHostPort(r.Addr)
		if !isLoopbackHost(host) {
			return fmt.Errorf("the %s at %s runs on another host, but computes would be reached at %s, which it cannot: give --compute-host (an address of this host it can reach) and --compute-replication-from (its network)", r.Name, r.Addr, cfg.Compute.AdvertiseHost)
		}
	}
	return nil
}

// checkLocalAddrsFree fails if an address of a service that runs here is
// taken, naming the service.
func checkLocalAddrsFree(cfg Config) error {
	if cfg.Pageserver.Local {
		for _, a := range []string{cfg.Pageserver.ListenPG, cfg.Pageserver.ListenHTTP} {
			if err := checkAddrFree(a); err != nil {
				return fmt.Errorf("page server: %w", err)
			}
		}
	}
	for i, sk := range cfg.SafekeeperList() {
		if !sk.Local {
			continue
		}
		for _, a := range []string{sk.ListenPG, sk.ListenHTTP} {
			if err := checkAddrFree(a); err != nil {
				return fmt.Errorf("safekeeper %d: %w", i+1, err)
			}
		}
	}
	return nil
}

// splitList splits a comma-separated flag value, dropping blanks.
func splitList(s string) []string {
	var out []string
	for _, f := range strings.Split(s, ",") {
		if f = strings.TrimSpace(f); f != "" {
			out = append(out, f)
		}
	}
	return out
}
