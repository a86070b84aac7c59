// Package safekeeper is Zenith's WAL acceptor: it keeps the WAL of each
// tenant/timeline durably, so that a commit acknowledged by the compute
// (stock PostgreSQL 15, which waits for a quorum of synchronous standbys)
// survives the loss of the compute and of any minority of safekeepers.
//
// # Storage
//
// Under the data directory, a timeline lives in <dir>/<tenant>/<timeline>/:
// the control file safekeeper.control and the WAL in segment files named
// as in pg_wal (PostgreSQL timeline 1, 16 MiB by default). The control file
// holds the term this safekeeper voted for, the term history
// [(term, start LSN)], the flush, commit and page server LSNs, the system
// id and the segment size; it is replaced atomically (temp file, fsync,
// rename, fsync of the directory) and carries a CRC-32C: a torn or corrupt
// control file is an error, never a reset. WAL is written where it
// belongs and made durable before a flush position is reported to anyone
// or written to the control file. The segment files are preallocated
// (repo/walseg: whole segments of zeros made ahead of need, written over
// and synced with fdatasync, which then commits no metadata), so a file's
// length does not say where the WAL ends: after a restart the end of the
// last complete record is the flush LSN (see below; the control file's
// copy is only a lower bound, written lazily). A control file flush LSN
// above it comes from a flush LSN inside a record whose end never came,
// or from a crash in the middle of a truncation; the control file then
// follows the WAL.
//
// # Finding the end of the WAL
//
// After a restart the WAL ends at the end of the last complete, valid
// record (page headers with the right xlp_pageaddr, record CRCs),
// decoded from a record start in the last segment file but one (walseg's
// RecordEnd: every byte below the last file was durable before that file
// was made); the files are cut there, to zeros, and what is kept is
// fsynced (after kill -9 the page cache still holds bytes written and not
// synced: they count once durable). Why that end E is never below
// anything acknowledged:
//
//   - Let F be the last flush LSN this safekeeper reported (to the
//     compute, its peers, its control file). Every byte below F was
//     synced before F was reported, so every record that ends at or below
//     F is intact and decodes, from a record start that is itself durable:
//     E is at least the end of the last record that ends at or below F. E
//     may be below F, which may lie inside a record (a stream stops
//     anywhere): only that record's head is lost here.
//   - What must survive is every commit the compute acknowledged: it
//     waits until a quorum reports a flush LSN at or above its commit
//     record's end (SyncRepWaitForLSN), a record end at or below each of
//     their F, so at or below each of their E. The elections take the
//     most advanced voter's last complete record as the new term's start
//     (greet's record_lsn), which is what they did before: a quorum of
//     voters meets the acknowledging quorum, so the start is at or above
//     every acknowledged commit.
//   - A term starts at a record end that was durable here before it was
//     put in the history (finishElected syncs first), so no term starts
//     above E: a restart changes no history, except to complete a
//     truncation that crashed before its control file (the cut goes
//     first). A truncation leaves zeros after the cut (walseg), so WAL
//     written again never runs on into a diverged term's bytes that
//     decoding would take for records.
//   - The commit LSN is a byte position and may lie in the record lost:
//     it comes down to E. The page server was sent WAL only up to the
//     commit and flush LSNs and ingests whole records, so it holds none
//     above E from here.
//   - Where old segments were removed the WAL begins at a segment
//     boundary, inside a record perhaps, and decoding starts after that
//     record's rest, as the page headers say, with no CRC to check it: so
//     a segment becomes the first only once that rest is durable here
//     (walFiles.removeBelow).
//   - The compute streams again from E, a record end, with the same
//     bytes: a term has one compute.
//
// # Commands
//
// A safekeeper serves libpq (package pgwire) on one listener. Ids are 32
// lowercase hex characters, LSNs %X/%X, a term history is written as
// "term@lsn,term@lsn" (empty for none).
//
//	greet <tenant> <timeline>
//	    row: term, history, flush_lsn, record_lsn, commit_lsn, begin_lsn
//	    (record_lsn is the end of the last complete record at or below
//	    flush_lsn: where a new term may start; where old segments were
//	    removed, decoding starts at the first record the page header of
//	    begin_lsn points to, as PostgreSQL's XLogFindNextRecord does)
//	vote <tenant> <timeline> <term>
//	    votes for term if it is higher than any seen (persisted before the
//	    answer) and drops the connection to the compute of an older term;
//	    row: granted (t/f) and greet's columns after the vote
//	read_wal <tenant> <timeline> <start> <end>
//	    COPY OUT of the raw WAL bytes [start, end) (end <= flush LSN), for
//	    a peer being brought up to date in an election
//	elected <tenant> <timeline> <term> <start> <donor> <history>
//	    the election of term is won with start LSN start: truncate what
//	    diverges from the donor's history, pull the missing WAL [.., start)
//	    from the donor (host:port of its libpq listener; "-" when this
//	    safekeeper is the donor), and append (term, start) to the history
//	compute <tenant> <timeline> <term> <start> <connstr>
//	    stream WAL from the compute of term (a physical replication
//	    connection with application_name safekeeper<id> and slot
//	    safekeeper_<id>); start initialises an empty timeline's WAL (the
//	    LSN of the basebackup the compute started from); connstr is the
//	    rest of the line, in libpq keyword/value or URL form; a term has
//	    one compute (another needs a new election), because streaming
//	    resumes at the flush LSN, which may lie inside a record
//
// A safekeeper never accepts WAL, or a compute, from a term lower than
// the one it voted for, and never reconnects to an older term's compute:
// a zombie compute cannot get a commit acknowledged.
//
// # Serving WAL to the page server and to read replicas
//
// A replication connection (startup parameter replication=true) names its
// timeline with startup options, as a libpq connection string does with
// options='-c tenant_id=<id> -c timeline_id=<id>'. It supports
// IDENTIFY_SYSTEM (xlogpos is the commit LSN), CREATE_REPLICATION_SLOT
// (accepted and ignored: WAL retention follows the page server's reported
// flush LSN) and START_REPLICATION [SLOT s] [PHYSICAL] lsn [TIMELINE 1],
// which streams XLogData only up to the commit LSN, with keepalives
// (pgwire.SendWAL, the loop the page server's walsender runs too). The
// standby status updates' flush position is recorded as the page server's
// consistent LSN, but only from a session of user pageserver
// (PageserverUser): any other client only reads.
//
// Read replicas are stock PostgreSQL hot standbys whose walreceiver
// connects here (primary_conninfo names every safekeeper). A walreceiver
// always asks from the start of a segment; where this safekeeper's WAL
// begins later in that segment (a branch's first term), it is served
// from where it begins, and the standby keeps its own bytes below. Until
// a timeline has a system id (no compute has written to it yet),
// IDENTIFY_SYSTEM tells such a client so, and its walreceiver retries.
// Hot standby feedback is accepted and ignored: the safekeepers cannot
// pass it on to the primary. The commit LSN is a byte position: it may lie inside a
// record that the next election drops (an election keeps only complete
// records). When an election truncates WAL a walsender has already sent,
// the walsender ends the stream (CopyDone, then an error) without sending
// more, and the client starts again from a point it knows to be complete
// (the page server: the end of the last record it ingested).
//
// # Commit LSN and WAL removal
//
// Each safekeeper polls its peers' HTTP status (--peers) and takes as
// commit LSN the q-th highest flush LSN (q = a majority of peers + 1) among
// the safekeepers that are in its term and in sync with it (their history
// ends with the same (term, start)). The page server reports its
// consistent LSN to the safekeeper it streams from; the others take the
// highest one their peers report. A page server that attaches tenants
// with generation numbers names its generation in the startup options
// (-c pageserver_generation=<n>, sent only to safekeepers): the highest
// generation seen is kept in the control file, a report of a lower one
// (a stale page server, whose uploads are fenced) is ignored, and a
// higher one's replaces the LSN, even a lower LSN. `zenith tenant attach`
// announces the new generation before the page server attaches (PUT
// /v1/tenant/<id>/pageserver_generation/<n>, admin): the LSN is then 0,
// nothing is removed until that generation reports, and a stale page
// server's reports in between are already ignored. Whole segment files
// that end at or below the page server's consistent LSN, and below the
// flush LSN of every peer, are removed; while a peer cannot be reached
// nothing is.
//
// # Catching up from peers
//
// A safekeeper that missed an election (down, partitioned, or restarted
// with an empty directory while a compute started) learns from the peer
// poll that a peer joined a newer term and streams from its compute. It
// then joins that term as the election would have brought it in, with
// the peer as donor: it records the term, truncates what diverges, pulls
// the WAL it lacks from the donor over HTTP (up to the donor's flush LSN),
// and streams from the term's compute, counting towards the quorum again
// without waiting for the next election (recovery.go).
//
// # HTTP
//
// GET /v1/status (all timelines), GET /v1/timeline/<tenant>/<timeline>
// (JSON), GET /v1/timeline/<tenant>/<timeline>/compute (its compute's term
// and connection string) and .../wal?start=LSN&end=LSN (raw WAL bytes,
// for a peer catching up; both admin), DELETE /v1/timeline/<tenant>/<timeline> (its WAL and control
// file, after the page server deleted the branch; {"deleted": false} if it
// had none), GET /v1/memory (the process's resident memory and Go heap,
// JSON), GET /metrics (Prometheus), GET /debug/pprof/... (Go profiles,
// go tool pprof http://ADDR/debug/pprof/profile; admin token).
//
// # Known limits
//
// The start LSN of a term is found by
// decoding the most advanced voter's WAL from its last term's start, so an
// election costs a read of that term's WAL. The WAL segment size is taken
// to be PostgreSQL's default (16 MiB), and the WAL is named as timeline 1.
// A timeline that has taken WAL keeps a spare segment of zeros and a
// whole last segment: 16 to 32 MiB of disk beyond its WAL. A restart
// decodes up to two segments per timeline to find where its WAL ends.
//
// This package must never acknowledge (report as flushed) WAL that is not
// fsynced, with the directory entries of its files and of the
// directories above them (walseg's package doc, "Directory entries"),
// and never serve the page server WAL that a later election
// could remove.
package safekeeper
