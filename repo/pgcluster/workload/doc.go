// Package workload drives real PostgreSQL 15 servers, over ordinary
// connections, through workloads whose WAL the oracle tests and benchmarks
// check: the decoder against pg_waldump, WAL redo against the real pages,
// the page server against the compute.
//
// The mixed workload (Run) writes more than 100,000 WAL records at scale
// 1 and reaches every redo routine those oracles care about. Its steps, in
// order, each after a CHECKPOINT so that full-page images appear:
//
//	schema           tables and indexes: Storage CREATE, catalog heap/btree inserts
//	sequences        nextval, ALTER SEQUENCE RESTART, setval, a bigserial column
//	heap_insert      single-row inserts, INSERT ... SELECT, ON CONFLICT (speculative
//	                 insertion); btree leaf/upper splits, new root, deduplication
//	copy             COPY (heap_multi_insert) and COPY FREEZE (all-frozen pages)
//	toast            out-of-line values, compressed and not; their update and delete
//	update           HOT updates with pruning, non-HOT updates of indexed columns
//	delete           random deletes and a contiguous 40% of the table
//	row_locks        FOR KEY SHARE / FOR SHARE from concurrent transactions
//	                 (MultiXacts), an update of locked rows, a lock following an
//	                 update chain
//	vacuum           heap pruning and vacuum, visibility map, btree page deletion
//	hash             hash index: splits, overflow pages, vacuum and squeeze
//	gin              GIN with and without fastupdate: pending list, posting trees
//	gist             GiST: splits, vacuum with page deletion, sorted build
//	spgist           SP-GiST over text (radix) and points (quad tree), vacuum
//	brin             BRIN: creation, summarization, in-place widening, desummarize
//	two_phase        PREPARE TRANSACTION, COMMIT/ROLLBACK PREPARED, one across a
//	                 checkpoint
//	subtransactions  savepoints, >64 subtransactions (XID assignment), an abort
//	databases        CREATE DATABASE STRATEGY WAL_LOG and FILE_COPY, DROP DATABASE
//	truncate         TRUNCATE, VACUUM truncating a heap, VACUUM FULL
//	vacuum_freeze    VACUUM FREEZE, VACUUM FULL pg_class (relation map)
//	wal_misc         logical message, restore point, WAL segment switch
//
// StepReport.Records names, per step, the record types ("Rmgr/TYPE" as
// pg_waldump prints them) the step always writes; the package's test
// checks each of them against pg_waldump.
//
// The run is deterministic given Options.Seed: the statements, their order
// and their data come from math/rand seeded with it, concurrent
// transactions are interleaved in a fixed order, and Settings turns off
// autovacuum and time-driven checkpoints. (The WAL still differs in what
// PostgreSQL does on its own: running-xacts records, the background
// writer's timing.)
//
// What it must never do: depend on the machine it runs on (it only talks
// SQL to the server it is given), or leave a transaction open or prepared.
package workload
