// Package pgsuites runs PostgreSQL 15's own regression suites against a
// running server: the core regression tests (parallel_schedule, driven by
// pg_regress) and the isolation tests (isolation_schedule, driven by
// pg_isolation_regress and isolationtester). Zenith uses them as an oracle
// for breadth: whatever PostgreSQL's own tests do must work on a compute
// node exactly as it works on stock PostgreSQL of the same binaries, so a
// test suite compares the set of failing tests of the two.
//
// The drivers come from Debian's postgresql-server-dev-15; the tests
// themselves are not packaged and are prepared once per machine by
// scripts/pgsrc (apt-get source postgresql-15), which also builds the C
// modules the regression tests load (regress.so, refint.so, autoinc.so).
// FindSources locates that tree.
//
// What it must never do: change the server it is pointed at other than
// through the tests themselves (the drivers drop and create their
// databases and roles, as make installcheck does), or leave a driver running: every run
// is bounded by its context, and a run that ends kills the driver's whole
// process group by pid.
package pgsuites
