package control

import (
	"context"
	"fmt"
	"net"
	"path/filepath"
	"strconv"
	"strings"
)

// pageserverDaemon is the page server that runs from this repository.
func (e *Env) pageserverDaemon() *Daemon {
	return &Daemon{
		Name:    "page server",
		Args:    []string{"pageserver", "run", "-D", e.PageserverDir()},
		PidPath: filepath.Join(e.Dir, "pageserver.pid"),
		LogPath: filepath.Join(e.Dir, "pageserver.log"),
		Ready:   func(ctx context.Context) error { return e.Pageserver().Ping(ctx) },
	}
}

// safekeeperDaemon is safekeeper n (from 1) of this repository.
func (e *Env) safekeeperDaemon(n int) *Daemon {
	pgAddr := e.SafekeeperAddr(n)
	httpAddr := net.JoinHostPort("127.0.0.1", strconv.Itoa(e.Config.Safekeepers.BaseHTTPPort+n-1))
	return &Daemon{
		Name:    fmt.Sprintf("safekeeper %d", n),
		Args:    []string{"safekeeper", "run", "-D", e.SafekeeperDir(n), "--id", strconv.Itoa(n)},
		Extra:   append([]string{"--listen-pg", pgAddr, "--listen-http", httpAddr}, e.safekeeperPeers(n)...),
		PidPath: filepath.Join(e.Dir, fmt.Sprintf("safekeeper-%d.pid", n)),
		LogPath: filepath.Join(e.Dir, fmt.Sprintf("safekeeper-%d.log", n)),
		Ready: func(ctx context.Context) error {
			var d net.Dialer
			conn, err := d.DialContext(ctx, "tcp", pgAddr)
			if err != nil {
				return err
			}
			return conn.Close()
		},
	}
}

// safekeeperPeers is the --peers flag of safekeeper n: the other
// safekeepers' HTTP addresses, from which it learns the commit LSN.
func (e *Env) safekeeperPeers(n int) []string {
	var peers []string
	for i := 1; i <= e.Config.Safekeepers.Count; i++ {
		if i != n {
			peers = append(peers, net.JoinHostPort("127.0.0.1", strconv.Itoa(e.Config.Safekeepers.BaseHTTPPort+i-1)))
		}
	}
	if len(peers) == 0 {
		return nil
	}
	return []string{"--peers", strings.Join(peers, ",")}
}

// SafekeeperAddr is the WAL service address of safekeeper n (from 1).
func (e *Env) SafekeeperAddr(n int) string {
	return net.JoinHostPort("127.0.0.1", strconv.Itoa(e.Config.Safekeepers.BasePGPort+n-1))
}

// safekeeperDaemons are all the repository's safekeepers, or only number
// only when only > 0.
func (e *Env) safekeeperDaemons(only int) ([]*Daemon, error) {
	count := e.Config.Safekeepers.Count
	if only > 0 {
		if only > count {
			return nil, fmt.Errorf("--id %d: this repository has %d safekeepers (config.toml safekeepers.count)", only, count)
		}
		return []*Daemon{e.safekeeperDaemon(only)}, nil
	}
	ds := make([]*Daemon, 0, count)
	for n := 1; n <= count; n++ {
		ds = append(ds, e.safekeeperDaemon(n))
	}
	return ds, nil
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
	if !e.Config.Pageserver.Local {
		return e.Pageserver().Ping(ctx)
	}
	return e.pageserverDaemon().Start(ctx, e.Progress)
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
	return first
}
