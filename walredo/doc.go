// Package walredo rebuilds pages by replaying WAL records onto an older
// image of them, the last step of the page server's GetPage@LSN.
//
// Relation pages are replayed by PostgreSQL's own redo code: a stock
// PostgreSQL 15 `postgres --single` per process, loaded with zenith's
// module (walredo/pgext, built with PGXS) and driven over its stdin and
// stdout. What PostgreSQL changes without a block reference is applied in
// Go instead (ApplyOp): CLOG status bits, multixact offsets and members,
// the visibility-map bits heap records clear, and visibility-map truncation.
//
// # Processes
//
// A Manager keeps a small pool of redo processes per tenant, started on
// the tenant's first request; requests are pipelined (written without
// waiting for earlier replies) and every request has a timeout. A process
// that dies (a PANIC on bad WAL, kill -9) fails the requests it had in
// flight with ErrProcessDied, including the last lines it logged, and the
// next request starts a new one. A request that times out kills its
// process (it is stuck: replies come in order) and fails with ErrTimeout;
// one watchdog per process checks the oldest request, so a request costs
// no timer. The processes' stderr goes to the Manager's logger with the
// tenant id. Processes live until Close; nothing retires idle ones yet.
//
// # The module
//
// The module travels inside the zenith binary: scripts/build compiles
// walredo/pgext and copies the library and its build facts (the
// PostgreSQL version and PG_MODULE_MAGIC options it was compiled for) into
// walredo/embedded, which the Go build embeds (module.go). Config.Extension,
// a path, overrides it. Open writes the module once to
//
//	CACHE/walredo/HASH/zenith_walredo.so
//
// (CACHE: $ZENITH_CACHE_DIR, /var/cache/zenith as root, else
// ~/.cache/zenith; HASH: the start of its SHA-256), through a temporary
// file renamed into place, so processes installing it at once never see a
// part of it and a running process's mapped file never changes. Every
// process is started with dynamic_library_path pointing at that
// directory; the module is never installed into `pg_config --pkglibdir`
// (root-owned). Before a process starts, Open checks that this PostgreSQL
// loads the module: the major version first, then PostgreSQL's own check
// of the magic block (once per module); a mismatch is an
// *IncompatibleModuleError naming both versions.
//
// # Scratch directory
//
// `postgres --single` needs a data directory, and only one process can use
// one at a time. Config.Dir holds:
//
//	template/        initdb'd once (as the postgres OS user when running
//	                 as root), with the SQL function that starts the
//	                 module created in it; kept in the cache too
//	                 (CACHE/walredo/HASH/template-<PostgreSQL>), and
//	                 the next new Config.Dir on the machine copies it
//	                 from there (a fraction of a second; initdb takes
//	                 seconds, which every zenith init paid)
//	slot-N/          a copy of template/ per process slot, reused by
//	                 later processes
//	module-verified  the hash of the last module the template loaded
//
// A slot's scratch relations are deleted before a process starts in it.
//
// # Protocol
//
// The process is started as
//
//	postgres --single -D slot-N -F -c dynamic_library_path=CACHE/walredo/HASH:$libdir ... postgres
//
// and sent "SELECT zenith_walredo_serve();\n". The function prints the
// line "ZENITH_WALREDO_READY 1\n" (PostgreSQL's own banner comes before
// it and is skipped), then serves frames until stdin is closed. Every
// frame, both ways, is
//
//	u8 type | u32 body length | body             (integers little-endian)
//
// Requests:
//
//	'R' redo: u32 spcnode, u32 dbnode, u32 relnode, u8 fork, u32 block,
//	    u8 flags (bit 0: base image follows), [8192-byte base image],
//	    u32 record count, then per record: u64 LSN (the end of the record,
//	    EndRecPtr, which redo stamps on the page), u32 length, raw record.
//	'M' mask: u8 rmgr id, u32 block, 8192-byte page: the page masked by the
//	    resource manager's rm_mask, as wal_consistency_checking compares.
//
// Replies, one per request in request order: 'P' with the 8192-byte page,
// or 'E' with an error message (the process carries on: each request runs
// in a subtransaction). The C file's header comment says how replay is
// isolated from the scratch cluster itself.
//
// What this package must never do: write anything but its own scratch
// directory, or return a page it could not fully rebuild: every failure
// is an error.
package walredo
