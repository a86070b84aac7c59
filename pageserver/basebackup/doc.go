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
// The WAL segment, zeros but for its first page header and the record,
// goes out as a sparse file (GNU tar's PAX format 1.0, which Go's
// archive/tar and GNU tar read back as the whole segment): a few KiB of
// the stream instead of 16 MiB (basebackup_tar.go). Options.Timings
// splits a basebackup's time into its parts, for the page server's log.
//
// Options.Lazy leaves the relation files out and lists them in a manifest
// (api.LazyManifest) for a lazy compute to fetch page by page.
//
// It reads only the data-directory model (package datadir) and imports
// api for the manifest; never ingest, the page service or the server.
package basebackup
