// Package basebackup writes a timeline's data directory as a tar.
//
// Basebackup (basebackup.go) writes a tar of the data directory at an LSN
// that stock PostgreSQL 15 starts on without WAL replay: pg_control and a
// WAL segment holding a synthetic shutdown checkpoint record at the LSN
// (repo/pgdata.BuildShutdownCheckpointWAL), with the counters WalIngest
// tracked, plus every relation fork (eager mode), SLRUs, two-phase files
// and relmaps. Unlogged relations come back empty (their init fork), and a
// sequence may be up to 32 values ahead (SEQ_LOG_VALS), as after any crash
// recovery of PostgreSQL.
//
// Options.Lazy leaves the relation files out and lists them in a manifest
// (api.LazyManifest) for a lazy compute to fetch page by page.
//
// It reads only the data-directory model (package datadir) and imports
// api for the manifest; never ingest, the page service or the server.
package basebackup
