// Package pageserver is Zenith's page server: it ingests WAL for every
// timeline of every tenant, stores it in the repository, and serves pages
// as of any LSN (GetPage@LSN), basebackups, and the management commands,
// over the libpq protocol (the page service) and HTTP.
//
// It must never serve a page it could not reconstruct exactly, and never
// acknowledge WAL before it is durable.
//
// # The packages
//
// The server wires packages of its own, each with its doc: datadir (the
// data-directory model), walingest (WAL ingest and import), basebackup,
// walreceiver (WAL in, durably, and its store), pageservice (the page
// service's commands and page stream, which ask the server's tenants
// through pageservice.Tenants, implemented in page_service_tenants.go),
// httpapi (the HTTP API, which asks them through httpapi.Tenants,
// implemented in http_tenants.go) and api (what the page service's client and server share, the page
// stream's messages and the tenant manager's error sentinels included).
// pstest holds their tests' shared fixtures.
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
// Package pageservice serves it over the libpq protocol (package pgwire),
// simple or extended query; each query
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
//	branch_list <tenant> [<branch|timeline>]    one branch: without its sizes
//	basebackup <tenant> <branch|timeline> [lsn]   COPY OUT of a tar
//	callmemaybe <tenant> <branch|timeline> <connection string>
//	safekeepers <tenant> <branch|timeline> <host:port>[,<host:port>...]
//	pagestream <tenant> <branch|timeline>         COPY BOTH (api/pagestream.go)
//
// A request for an LSN the timeline has not reached waits for it up to
// wait_lsn_timeout; if the timeline's ingest stopped before it, the request
// fails at once with where and why it stopped (55000), as does a request
// for the latest state (basebackup or branch_create without an LSN). A malformed page request ends its COPY with an error; a
// message that cannot be framed ends its session; the server keeps serving
// everyone else.
//
// A physical replication session (replication=true; a read replica's
// walreceiver when there are no safekeepers) names its timeline in its
// startup options, options='-c tenant_id=<id> -c timeline_id=<id>', and
// runs IDENTIFY_SYSTEM, TIMELINE_HISTORY, SHOW wal_segment_size and
// START_REPLICATION [SLOT s] [PHYSICAL] lsn [TIMELINE 1] on the
// timeline's WAL store (pageservice/replication.go); it needs a token
// for that tenant.
//
// # Tokens and TLS
//
// With auth_public_key set, both listeners take only ed25519-signed tokens
// (package repo/auth): the page service as the libpq password, the HTTP
// API as "Authorization: Bearer". Every command declares its need in
// pageservice.CommandNeeds and every route in httpapi.API.Routes: a
// tenant's data needs a token for it, management (tenants, WAL sources,
// pprof) an admin token; /v1/status and /metrics stay public. A bad
// token is 28P01 (401), a token whose scope does not reach the command
// 28000 (403). With tls_cert
// and tls_key both listeners speak TLS and the page service refuses
// plaintext; the WAL receivers present Config.Client to the safekeepers.
//
// # WAL in, durably
//
// Package walreceiver pulls each timeline's WAL, stores and fsyncs it
// before it reports it flushed, and hands the records to the timeline's
// WalIngest (package walingest); page_service_deps.go wires the two. When
// a record fails to ingest, ingest stops and the receiver goes on storing
// and acknowledging WAL: the timeline reports "ingest of timeline T
// stopped at LSN X: reason" in branch_list (column ingest_stopped), the
// HTTP timeline list (ingest_stopped), the metrics
// zenith_pageserver_ingest_stopped{tenant_id,timeline_id} and
// zenith_pageserver_ingest_stopped_lsn, and once in the log; requests
// after X fail at once. FailIngestEnv (failpoint.go) injects such a
// failure, for tests.
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
package pageserver
