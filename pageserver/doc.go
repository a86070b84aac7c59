// Package pageserver is Zenith's page server: it ingests WAL for every
// timeline of every tenant, stores it in the repository, and serves pages
// as of any LSN (GetPage@LSN), basebackups, and the management commands,
// over the libpq protocol (the page service) and HTTP.
//
// It must never serve a page it could not reconstruct exactly, and never
// acknowledge WAL before it is durable.
//
// # The data-directory model
//
// Besides pages, a timeline holds what a data directory needs to be
// rebuilt at any LSN: the list of databases (key.DBDir), each database's
// relations and their forks (key.RelDir), each fork's size in blocks
// (key.RelSize), relmapper files, SLRU segments with their sizes and
// lists, prepared transactions' state files and their list, pg_control
// and the latest checkpoint, and small auxiliary files (PG_VERSION,
// configuration) listed under key.AuxFile(AuxDirPath). The directory values
// are small versioned encodings (datadir.go, auxfile.go) whose decoders
// reject malformed input.
//
// Every change goes through a DatadirWriter, one per timeline: Begin(lsn)
// at a record's end LSN, then CreateDatabase/DropDatabase,
// CreateRelation/DropRelation/SetRelSize/PutRelBlock, PutRelMap,
// SetSLRUSegmentSize/RemoveSLRUSegment/PutSLRUPage,
// PutTwoPhaseFile/RemoveTwoPhaseFile, PutControlFile/PutCheckpoint,
// PutAuxFile, and Commit(prev) with the record's start. Import and WAL
// ingest both use it, so they cannot disagree on what a directory means.
//
// ImportDataDir fills a new timeline from a cleanly shut down data
// directory (what `zenith init` does after initdb) as one record at the end
// of its shutdown checkpoint record, so WAL ingest continues right after
// that checkpoint.
//
// # The process
//
// Server (server.go) is what `zenith pageserver run -D DIR` runs: one
// oklog/run group of the page service listener, the HTTP listener (JSON API
// and Prometheus /metrics) and one WAL receiver per loaded timeline, over a
// repository in DIR/tenants and a WAL redo manager in DIR/walredo. Branch
// names are per tenant, in DIR/tenants/<tenant>/branches.json; clients never
// read these files, they ask the server.
//
// # The page service
//
// The libpq protocol (package pgwire), simple or extended query; each query
// is one command (package api has the grammar as typed commands, each with
// a String/Parse pair that the client uses too; errors carry a
// SQLSTATE: 42601 syntax, 22023 malformed argument, 42704 unknown object,
// 42710 exists, 55000 LSN not servable (below the GC cut-off, or after the
// point where the timeline's ingest stopped), 57014 LSN not reached in
// time):
//
//	identify_system | status | tenant_create [id [generation]] | tenant_list
//	tenant_attach <tenant> <generation>  restore from remote storage (or take the generation)
//	tenant_detach <tenant>               upload everything, then remove it here
//	import <tenant> <branch>            then COPY IN of a data directory tar
//	branch_create <tenant> <name> <branch|timeline>[@<lsn>|@<RFC 3339 time>]
//	branch_list <tenant>
//	basebackup <tenant> <branch|timeline> [lsn]   COPY OUT of a tar
//	callmemaybe <tenant> <branch|timeline> <connection string>
//	safekeepers <tenant> <branch|timeline> <host:port>[,<host:port>...]
//	pagestream <tenant> <branch|timeline>         COPY BOTH (pagestream.go)
//
// A request for an LSN the timeline has not reached waits for it up to
// wait_lsn_timeout; if the timeline's ingest stopped before it, the request
// fails at once with where and why it stopped (55000), as does a request
// for the latest state (basebackup or branch_create without an LSN). A malformed page request ends its COPY with an error; a
// message that cannot be framed ends its session; the server keeps serving
// everyone else.
//
// # Tokens and TLS
//
// With auth_public_key set, both listeners take only ed25519-signed tokens
// (package repo/auth): the page service as the libpq password, the HTTP
// API as "Authorization: Bearer". Every command declares its need in
// commandNeeds and every route in routes: a tenant's data needs a token
// for it, management (tenants, WAL sources, pprof) an admin token;
// /v1/status and /metrics stay public. A bad token is 28P01 (401), a
// token whose scope does not reach the command 28000 (403). With tls_cert
// and tls_key both listeners speak TLS and the page service refuses
// plaintext; the WAL receivers present Config.Client to the safekeepers.
//
// # WAL in, durably
//
// WalReceiver (walreceiver.go) pulls a timeline's WAL over the replication
// protocol from its source, writes it to the timeline's WALStore (raw WAL in
// pg_wal-named segment files), fsyncs, and only then reports it flushed and
// hands the records to WalIngest. As a compute's synchronous standby this
// is what makes a commit wait for the page server. After a crash the
// repository holds what was flushed to layer files (its disk-consistent
// LSN); the receiver re-ingests the stored WAL above that before it
// streams again, so nothing the compute was told is durable is lost. Each
// connection starts at the end of the last record ingested: stored bytes
// after it (a record the source had not finished) are cut off first, as
// they may be of a dead compute whose successor's WAL differs there.
// Streamed WAL that does not decode is cut off the same way, and the
// receiver connects again with a growing backoff (it reports the error and
// counts it in zenith_pageserver_wal_decode_errors_total); only a failed
// fsync stops it for good.
//
// Durability never depends on ingest: when a record that decodes fails to
// ingest, ingest stops at the end of the record before it (X), and the
// receiver goes on storing, fsyncing and acknowledging WAL, so commits on
// the compute go on. The timeline reports "ingest of timeline T stopped at
// LSN X: reason" in branch_list (column ingest_stopped), the HTTP
// timeline list (ingest_stopped), the metrics
// zenith_pageserver_ingest_stopped{tenant_id,timeline_id} and
// zenith_pageserver_ingest_stopped_lsn, and once in the log; requests after
// X fail at once (see above). A page server restarted once the cause is
// fixed ingests the stored WAL from its disk-consistent LSN on and catches
// up. To safekeepers it reports its disk-consistent LSN, which stays at or
// below X, so they keep the WAL it has not ingested. FailIngestEnv
// (failpoint.go) injects such a failure, for tests.
//
// The source is a compute (callmemaybe) or a set of safekeepers
// (safekeepers): then the receiver streams from the one with the highest
// commit LSN, which sends nothing beyond it, so the page server never
// ingests WAL a later election could truncate (a record the commit LSN
// cut in two may be dropped by one: a safekeeper then ends the stream,
// and the receiver cuts that record's start off); it reports its
// disk-consistent LSN to them as flushed, so they keep the WAL above it.
//
// # Memory
//
// What the server keeps in memory is bounded: the in-memory layers of every
// timeline together by the repository's InMemoryLayerLimit (past it the WAL
// receiver's ingest waits for flushes), reconstructed pages by the page
// cache and layer-file blocks by the block cache. The status command, GET
// /v1/status ("memory") and zenith_pageserver_memory_bytes report each
// next to its limit, with the Go heap, the process's RSS and the WAL
// received but not yet ingested (memory.go). The HTTP listener serves
// net/http/pprof's profiles under /debug/pprof/ (go tool pprof
// http://ADDR/debug/pprof/heap); they show the process's internals but no
// tenant data, and belong behind the admin scope once token auth exists.
//
// # Basebackup
//
// Basebackup (basebackup.go) writes a tar of the data directory at an LSN
// that stock PostgreSQL 15 starts on without WAL replay: pg_control and a
// WAL segment holding a synthetic shutdown checkpoint record at the LSN
// (repo/pgdata.BuildShutdownCheckpointWAL), with the counters WalIngest
// tracked, plus every relation fork (eager mode), SLRUs, two-phase files
// and relmaps. Unlogged relations come back empty (their init fork), and a
// sequence may be up to 32 values ahead (SEQ_LOG_VALS), as after any crash
// recovery of PostgreSQL.
package pageserver
