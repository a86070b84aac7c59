// Package control holds the user-facing commands of zenith and the local
// environment they manage: the repository directory, the page server and
// safekeeper processes (by pidfile), and compute nodes.
//
// The repository directory (./.zenith or $ZENITH_REPO_DIR) holds:
//
//	config.toml                      pg_bin_dir, default_tenant, [pageserver], [safekeepers], [compute]
//	pageserver/                      the page server's working directory (pageserver.toml, tenants/)
//	pageserver.pid, pageserver.log   the background page server (zenith start)
//	safekeepers/skN/                 safekeeper N's data; safekeeper-N.pid and .log next to pageserver's
//	pgdatadirs/tenants/T/NODE/       compute node NODE of tenant T: node.toml, pgdata/, postgres.log
//
// A compute node's data directory comes from a page server basebackup; it
// is reused only after a clean stop when its branch has not moved since
// (Node.CleanLSN), and otherwise rebuilt, so a crashed compute's local files
// are never trusted. Without safekeepers a writable compute has the page
// server as its synchronous standby (callmemaybe); with them, zenith pg
// start runs the safekeepers' election first and the compute waits for a
// majority of them. A read replica (pg start --replica) is a hot standby
// that streams from the safekeepers (without them, from the page server's
// WAL store) and is built at a point where the real WAL has a checkpoint
// (compute_replica.go).
//
// Services may run on other hosts: config.toml gives each one's host:port
// and whether it is local; only local ones are started, stopped and
// written to by this repository, and computes are reached at
// [compute] advertise_host by users, the page server and the safekeepers.
//
// The CLI never reads the page server's repository files itself; it asks
// the page server (PageserverClient), so the same commands work against a
// page server on another host. Nothing here may leave a process running
// that the user did not ask for, or signal a pid it has not verified is
// ours (Pidfile: >= 1 and /proc/<pid>/cmdline still names the process).
package control
