// Package pgcluster runs the stock PostgreSQL 15 programs that zenith
// builds on: it finds the binaries, creates data directories with initdb,
// starts a postmaster on a loopback port and a unix socket directory of its
// own, waits until it accepts connections, and stops it.
//
// zenith uses it for compute nodes and for the WAL redo scratch cluster;
// the tests use it (through the pgtest subpackage) to run the real
// PostgreSQL that every oracle test compares against.
//
// It lives under repo/, beside repo/pgdata (PostgreSQL's formats), because
// it is PostgreSQL the program: of zenith it imports only repo/netport, so
// that walredo and the tests of the lowest packages (repo/pgdata, pgwire,
// safekeeper) may use it and its test fixtures (pgtest, pgwaldump,
// workload) without importing upward into control (docs/architecture.md).
//
// PostgreSQL refuses to run as root. When the calling process is root,
// every PostgreSQL program is run as the unprivileged "postgres" OS user
// (the one Debian's package creates) and the directories handed to it are
// chowned to that user; RunAs and PrepareDir are the one place that knows
// how.
//
// What it must never do: signal a process it has not verified is the
// postmaster of its own data directory (the pid read back from
// postmaster.pid must be >= 1 and must be the process this Cluster started,
// or a postgres process whose working directory is the data directory), or
// keep global state: every Cluster carries its own binaries, directories,
// port and logger.
package pgcluster
