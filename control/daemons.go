package control

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/zenithdb/zenith/repo/auth"
)

// pageserverDaemon is the page server that runs from this repository.
func (e *Env) pageserverDaemon() *Daemon {
	return &Daemon{
		Name:    "page server",
		Args:    []string{"pageserver", "run", "-D", e.PageserverDir()},
		PidPath: filepath.Join(e.Dir, "pageserver.pid"),
		LogPath: filepath.Join(e.Dir, "pageserver.log"),
		Ready:   func(ctx context.Context) error { return e.Pageserver().Ping(ctx) },
		Environ: e.daemonEnv,
	}
}

// safekeeperDaemon is safekeeper n (from 1) of this repository.
func (e *Env) safekeeperDaemon(n int) *Daemon {
	sk := e.Config.SafekeeperList()[n-1]
	return &Daemon{
		Name:    fmt.Sprintf("safekeeper %d", n),
		Args:    []string{"safekeeper", "run", "-D", e.SafekeeperDir(n), "--id", strconv.Itoa(n)},
		Extra:   append(append([]string{"--listen-pg", sk.ListenPG, "--listen-http", sk.ListenHTTP}, e.safekeeperPeers(n)...), e.safekeeperSecurityFlags()...),
		PidPath: filepath.Join(e.Dir, fmt.Sprintf("safekeeper-%d.pid", n)),
		LogPath: filepath.Join(e.Dir, fmt.Sprintf("safekeeper-%d.log", n)),
		Ready:   func(ctx context.Context) error { return dialCheck(ctx, sk.ListenPG) },
		Environ: e.daemonEnv,
	}
}

// safekeeperSecurityFlags are the safekeepers' flags of token auth and
// TLS, as the repository has them.
func (e *Env) safekeeperSecurityFlags() []string {
	var f []string
	if e.Config.Security.Auth {
		f = append(f, "--auth-public-key", e.PublicKeyPath())
	}
	if e.Config.Security.TLS {
		f = append(f, "--tls-cert", e.TLSPath(auth.ServerCertFile), "--tls-key", e.TLSPath(auth.ServerKeyFile),
			"--tls-ca", e.TLSPath(auth.CACertFile))
	}
	return f
}

// dialCheck connects to addr and hangs up.
func dialCheck(ctx context.Context, addr string) error {
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return err
	}
	return conn.Close()
}

// safekeeperPeers is the --peers flag of safekeeper n: the other
// safekeepers' HTTP addresses, from which it learns the commit LSN.
func (e *Env) safekeeperPeers(n int) []string {
	var peers []string
	for i, sk := range e.Config.SafekeeperList() {
		if i+1 != n {
			peers = append(peers, sk.ListenHTTP)
		}
	}
	if len(peers) == 0 {
		return nil
	}
	return []string{"--peers", strings.Join(peers, ",")}
}

// SafekeeperAddr is the WAL service address of safekeeper n (from 1).
func (e *Env) SafekeeperAddr(n int) string {
	return e.Config.SafekeeperList()[n-1].ListenPG
}

// safekeeperDaemons are the repository's safekeepers that run here
// (SafekeeperNode.Local), or only number only when only > 0, which must
// run here.
func (e *Env) safekeeperDaemons(only int) ([]*Daemon, error) {
	list := e.Config.SafekeeperList()
	if only > 0 {
		if only > len(list) {
			return nil, fmt.Errorf("--id %d: this repository has %d safekeepers (config.toml safekeepers.count)", only, len(list))
		}
		if !list[only-1].Local {
			return nil, fmt.Errorf("safekeeper %d at %s runs on another host (config.toml: local = false): manage it there", only, list[only-1].ListenPG)
		}
		return []*Daemon{e.safekeeperDaemon(only)}, nil
	}
	var ds []*Daemon
	for i, sk := range list {
		if sk.Local {
			ds = append(ds, e.safekeeperDaemon(i+1))
		}
	}
	return ds, nil
}

// remoteServices are the configured services that run on other hosts
// (config.toml local = false): this repository only talks to them.
func (e *Env) remoteServices() []remoteService {
	var rs []remoteService
	if !e.Config.Pageserver.Local {
		rs = append(rs, remoteService{"page server", e.Config.Pageserver.ListenPG})
	}
	for i, sk := range e.Config.SafekeeperList() {
		if !sk.Local {
			rs = append(rs, remoteService{fmt.Sprintf("safekeeper %d", i+1), sk.ListenPG})
		}
	}
	return rs
}

// remoteService is a service this repository talks to but does not run.
type remoteService struct{ Name, Addr string }

// noteRemote says, for zenith start or stop (verb), which services run
// elsewhere and were left alone, and whether each answers.
func (e *Env) noteRemote(ctx context.Context, verb string) {
	for _, r := range e.remoteServices() {
		state := "answers"
		dctx, cancel := context.WithTimeout(ctx, 2*time.Second)
		if err := dialCheck(dctx, r.Addr); err != nil {
			state = "does not answer: " + err.Error()
		}
		cancel()
		fmt.Fprintf(e.Progress, "%s at %s runs on another host: not %s here (%s)\n", r.Name, r.Addr, verb, state)
	}
}

// startAll starts the safekeepers and then the page server (when it runs
// here), each waited for until it answers.
func (e *Env) startAll(ctx context.Context) error {
	sks, err := e.safekeeperDaemons(0)
	if err != nil {
		return err
	}
	for _, d := range sks {
		if err := d.Start(ctx, e.Progress); err != nil {
			return err
		}
	}
	e.noteRemote(ctx, "started")
	if !e.Config.Pageserver.Local {
		return e.Pageserver().Ping(ctx)
	}
	return e.startPageserver(ctx)
}

// startPageserver starts the page server that runs here, then re-attaches
// the tenants it should hold and does not (a page server that lost its
// disk).
func (e *Env) startPageserver(ctx context.Context) error {
	if err := e.pageserverDaemon().Start(ctx, e.Progress); err != nil {
		return err
	}
	return e.reattach(ctx)
}

// stopAll stops every compute node, then the page server and the
// safekeepers. It goes on after an error and returns the first.
func (e *Env) stopAll(ctx context.Context, immediate bool) error {
	var first error
	keep := func(err error) {
		if err != nil && first == nil {
			first = err
		}
	}
	nodes, err := e.nodes(nil)
	keep(err)
	for _, n := range nodes {
		keep(e.StopNode(ctx, n, immediate))
	}
	if e.Config.Pageserver.Local {
		keep(e.pageserverDaemon().Stop(ctx, immediate, e.Progress))
	}
	sks, err := e.safekeeperDaemons(0)
	keep(err)
	for _, d := range sks {
		keep(d.Stop(ctx, immediate, e.Progress))
	}
	e.noteRemote(ctx, "stopped")
	return first
}
