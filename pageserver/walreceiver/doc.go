// Package walreceiver is the page server's WAL in: one WalReceiver per
// timeline and its raw-WAL store (WALStore, pg_wal-named segment files
// kept by repo/walseg).
//
// WalReceiver (walreceiver.go) pulls a timeline's WAL over the replication
// protocol from its source, writes it to the timeline's WALStore (raw WAL in
// pg_wal-named segment files), fsyncs, and only then reports it flushed and
// hands the records to WalIngest, on a goroutine of its own
// (ingestworker.go), so the report never waits for an ingest. As a
// compute's synchronous standby this is what makes a commit wait for the
// page server: the WAL store's fsync, not the ingest. After a crash the
// repository holds what was flushed to layer files (its disk-consistent
// LSN); the receiver re-ingests the stored WAL above that before it
// streams again, so nothing the compute was told is durable is lost. Each
// connection starts at the end of the last record ingested: stored bytes
// after it (a record the source had not finished) are cut off first, as
// they may be of a dead compute whose successor's WAL differs there.
// Streamed WAL that does not decode is cut off the same way, and the
// receiver connects again with a growing backoff (it reports the error and
// counts it in zenith_pageserver_wal_decode_errors_total). A failed
// write, fsync or cut of the store (a full disk, an I/O error) does not
// stop it either: the store is cut back to its last good sync
// (WALStore.Recover; the flush position reported never passed it), the
// failure is reported (StoreError in the status, store_error in the HTTP
// timeline status, "WAL STORE FAILING" in zenith status, the metrics
// zenith_pageserver_wal_store_failing and
// zenith_pageserver_wal_store_errors_total, and the log), and the
// receiver connects again with backoff and streams from the cut, until
// the disk takes writes again. The store's segments are preallocated
// (whole segments of zeros, written over and synced with fdatasync), so
// WAL writes need no space, nor does a cut back within the last segment
// (zeroed in place); a full disk is found by the store's Sync,
// which checks at most once a second that the disk takes a new block and
// fails while it does not, so commits wait while the disk is full as they
// would if the writes failed (see the top of walstore.go, which also says
// why the end found by decoding after a crash is never below what was
// reported flushed). A write or fsync that does not return (a
// disk that does not answer) holds only this receiver: nothing after the
// last fsync is reported flushed meanwhile, and StoreStalled says which
// operation has been waiting since when, for the page server's stall
// report.
//
// Durability never depends on ingest: when a record that decodes fails to
// ingest, ingest stops at the end of the record before it (X), and the
// receiver goes on storing, fsyncing and acknowledging WAL, so commits on
// the compute go on. The timeline reports "ingest of timeline T stopped at
// LSN X: reason" in branch_list (column ingest_stopped), the HTTP
// timeline list (ingest_stopped), the metrics
// zenith_pageserver_ingest_stopped{tenant_id,timeline_id} and
// zenith_pageserver_ingest_stopped_lsn, and once in the log; requests after
// X fail at once (55000 from the page service). A page server restarted once the cause is
// fixed ingests the stored WAL from its disk-consistent LSN on and catches
// up. To safekeepers it reports its disk-consistent LSN, which stays at or
// below X, so they keep the WAL it has not ingested. FailIngestEnv
// (the page server's failpoint.go) injects such a failure, for tests.
//
// The source is a compute (callmemaybe) or a set of safekeepers
// (safekeepers): then the receiver streams from the one with the highest
// commit LSN, which sends nothing beyond it, so the page server never
// ingests WAL a later election could truncate (a record the commit LSN
// cut in two may be dropped by one: a safekeeper then ends the stream,
// and the receiver cuts that record's start off); it reports its
// disk-consistent LSN to them as flushed, so they keep the WAL above it.
//
// The stored WAL is also what read replicas stream when there are no
// safekeepers (sending.go): a walsender sends it up to SendableLSN, the
// end of the last complete record in the fsynced store, and a cut of the
// store below what a stream sent ends that stream.
//
// The receiver feeds an Ingester; the server wires it to a
// walingest.WalIngest, so this package imports neither walingest nor the
// page server, only api (the safekeeper set's address rules), pgwire (the
// replication client), repo/walseg and the repository.
package walreceiver
