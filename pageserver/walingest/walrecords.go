package walingest

import (
	"fmt"
	"io"
	"strings"

	"github.com/zenithdb/zenith/repo/pgdata"
)

// Handling is what the page server's ingest does with one kind of WAL
// record.
type Handling uint8

// The handlings of a record type.
const (
	// Ingested: the record changes what the page server stores (pages,
	// sizes, SLRUs, files, the checkpoint) as PostgreSQL's redo changes
	// the data directory.
	Ingested Handling = iota + 1
	// Ignored: the record changes nothing a compute started from the
	// page server reads; the reason says why that is safe.
	Ignored
	// Unsupported: ingest refuses the record (ErrUnsupportedRecord).
	Unsupported
)

// String is the handling's name as the record table and waldump print it.
func (h Handling) String() string {
	switch h {
	case Ingested:
		return "ingested"
	case Ignored:
		return "ignored"
	case Unsupported:
		return "unsupported"
	}
	return fmt.Sprintf("Handling(%d)", uint8(h))
}

// RecordHandling is what ingest does with one kind of record, and how (for
// an ingested one) or why (for an ignored or unsupported one).
type RecordHandling struct {
	Handling Handling
	How      string
}

// What ingest does with records that reference blocks: every referenced
// block gets the record (pageserver/walingest_blocks.go), a block past its
// fork's end extends the fork, and GetPage replays the record with
// PostgreSQL's own redo in walredo.
const (
	blocksRedo  = "filed under every block it references (a block past the fork's end extends it); GetPage replays it with PostgreSQL's redo"
	imagesFiled = "every applied, uncompressed image is filed as the page replay makes of it (hole zeroed, pd_lsn set); " +
		"otherwise " + blocksRedo + " (a compressed image: redo decompresses it)"
	imagesKept  = "; a block whose applied, uncompressed full-page image it carries is filed as the restored page instead (this rmgr's redo leaves a restored block as it is: pgdata.Record.RestoredImagesKept)"
	vmClear     = "; the visibility-map bits it clears without a block reference are applied in Go (walredo.OpsForRecord)"
	standbyOnly = "no block reference; its redo only resolves conflicts with hot-standby queries, and a compute is never a hot standby of the page server"
)

func ingested(how string) RecordHandling { return RecordHandling{Ingested, how} }
func ignored(why string) RecordHandling  { return RecordHandling{Ignored, why} }

// recordHandlings classifies every record type PostgreSQL 15 writes
// (pgdata.RecordTypes): the single source of the record table
// (docs/wal-records.md, RecordTable) and of waldump's --stats, and what
// decodeRecord refuses. Changing what ingest does with a type means
// changing its line here.
var recordHandlings = map[pgdata.RecordType]RecordHandling{
	{Rmgr: pgdata.RmgrXLOG, Info: pgdata.XLogCheckpointShutdown}: ingested("its CheckPoint replaces the stored checkpoint (next XID, OID, multixact, oldest XID...), which a basebackup writes into pg_control"),
	{Rmgr: pgdata.RmgrXLOG, Info: pgdata.XLogCheckpointOnline}:   ingested("moves the stored checkpoint's counters and horizons forward, as xlog_redo does"),
	{Rmgr: pgdata.RmgrXLOG, Info: 0x20}:                          ignored("NOOP: carries nothing (used by tests and to pad WAL)"),
	{Rmgr: pgdata.RmgrXLOG, Info: pgdata.XLogNextOID}:            ingested("sets the stored checkpoint's next OID"),
	{Rmgr: pgdata.RmgrXLOG, Info: 0x40}:                          ignored("SWITCH: ends the segment; the WAL reader skips to the next one, and redo does nothing"),
	{Rmgr: pgdata.RmgrXLOG, Info: 0x50}:                          ignored("BACKUP_END: ends an online backup's recovery; a basebackup from the page server starts without recovery (no backup_label)"),
	{Rmgr: pgdata.RmgrXLOG, Info: pgdata.XLogParameterChange}:    ingested("applied to the stored pg_control (max_connections, wal_level... as of the record)"),
	{Rmgr: pgdata.RmgrXLOG, Info: 0x70}:                          ignored("RESTORE_POINT: a name for recovery_target_name; redo does nothing"),
	{Rmgr: pgdata.RmgrXLOG, Info: 0x80}:                          ignored("FPW_CHANGE: only tells a replaying server whether full_page_writes was on; no file changes, and the next checkpoint record carries the setting"),
	{Rmgr: pgdata.RmgrXLOG, Info: 0x90}:                          ignored("END_OF_RECOVERY: written at the end of a recovery or promotion; a compute never recovers (it starts at a shutdown checkpoint), and redo only checks the timeline"),
	{Rmgr: pgdata.RmgrXLOG, Info: 0xA0}:                          ingested(imagesFiled),
	{Rmgr: pgdata.RmgrXLOG, Info: 0xB0}:                          ingested(imagesFiled),
	{Rmgr: pgdata.RmgrXLOG, Info: 0xD0}:                          ignored("OVERWRITE_CONTRECORD: marks a record cut short by a crash as overwritten; the WAL decoder handles the flag, redo only checks it"),

	{Rmgr: pgdata.RmgrTransaction, Info: pgdata.XLogXactCommit}:         ingested("CLOG bits of the transaction and its subtransactions (in Go), the relations it drops lose every fork, the next XID moves past its XIDs; the progress of the replication origin it carries, if any, advances (pg_logical/replorigin_checkpoint)"),
	{Rmgr: pgdata.RmgrTransaction, Info: pgdata.XLogXactPrepare}:        ingested("its state becomes the pg_twophase file a basebackup writes; the next XID moves past it; the progress of its session's replication origin, if any, advances"),
	{Rmgr: pgdata.RmgrTransaction, Info: pgdata.XLogXactAbort}:          ingested("CLOG bits (in Go), the relations it created are dropped; the progress of the replication origin it carries, if any, advances"),
	{Rmgr: pgdata.RmgrTransaction, Info: pgdata.XLogXactCommitPrepared}: ingested("as COMMIT, and the pg_twophase file goes"),
	{Rmgr: pgdata.RmgrTransaction, Info: pgdata.XLogXactAbortPrepared}:  ingested("as ABORT, and the pg_twophase file goes"),
	{Rmgr: pgdata.RmgrTransaction, Info: pgdata.XLogXactAssignment}:     ingested("the next XID moves past the subtransactions it lists (pg_subtrans is not kept: a compute starts with no transaction in progress)"),
	{Rmgr: pgdata.RmgrTransaction, Info: 0x60}:                          ignored("INVALIDATION: cache invalidations for logical decoding and hot standby; no file changes"),

	{Rmgr: pgdata.RmgrStorage, Info: pgdata.XLogSmgrCreate}:   ingested("creates the relation fork (size 0) in the relation directory"),
	{Rmgr: pgdata.RmgrStorage, Info: pgdata.XLogSmgrTruncate}: ingested("truncates the main, FSM and visibility-map forks as the flags say (the map page cut through is changed in Go)"),

	{Rmgr: pgdata.RmgrCLOG, Info: 0x00}:                    ingested("zeroes the pg_xact page (in Go), extending the segment"),
	{Rmgr: pgdata.RmgrCLOG, Info: pgdata.XLogClogTruncate}: ingested("removes the pg_xact segments before the cut-off; sets the oldest XID and its database"),

	{Rmgr: pgdata.RmgrDatabase, Info: pgdata.XLogDBaseCreateFileCopy}: ingested("copies the template database's relations and relmap from one tablespace to another (STRATEGY FILE_COPY: one record per tablespace)"),
	{Rmgr: pgdata.RmgrDatabase, Info: pgdata.XLogDBaseCreateWALLog}:   ingested("creates the database directory in its tablespace (STRATEGY WAL_LOG: its pages follow as FPI records)"),
	{Rmgr: pgdata.RmgrDatabase, Info: pgdata.XLogDBaseDrop}:           ingested("drops the database directory with every relation in it, in every tablespace the record names"),

	{Rmgr: pgdata.RmgrTablespace, Info: pgdata.XLogTblspcCreate}: ingested("adds the tablespace (OID and location) to the tablespace list; a basebackup recreates its pg_tblspc entry"),
	{Rmgr: pgdata.RmgrTablespace, Info: pgdata.XLogTblspcDrop}:   ingested("removes the tablespace from the tablespace list"),

	{Rmgr: pgdata.RmgrMultiXact, Info: pgdata.XLogMultiXactZeroOffPage}: ingested("zeroes the pg_multixact/offsets page (in Go)"),
	{Rmgr: pgdata.RmgrMultiXact, Info: pgdata.XLogMultiXactZeroMemPage}: ingested("zeroes the pg_multixact/members page (in Go)"),
	{Rmgr: pgdata.RmgrMultiXact, Info: pgdata.XLogMultiXactCreateID}:    ingested("writes the multixact's offset and members (in Go); the next multixact, member offset and XID move past it"),
	{Rmgr: pgdata.RmgrMultiXact, Info: pgdata.XLogMultiXactTruncateID}:  ingested("removes the offsets and members segments before the new oldest multixact; sets the oldest multixact and its database"),

	{Rmgr: pgdata.RmgrRelMap, Info: 0x00}: ingested("replaces the database's pg_filenode.map (or global/'s)"),

	{Rmgr: pgdata.RmgrStandby, Info: 0x00}:                    ignored("LOCK: AccessExclusiveLocks for hot-standby queries; no file changes"),
	{Rmgr: pgdata.RmgrStandby, Info: pgdata.XLogRunningXacts}: ingested("the next XID moves past what it says was assigned"),
	{Rmgr: pgdata.RmgrStandby, Info: 0x20}:                    ignored("INVALIDATIONS: cache invalidations for hot-standby backends; no file changes"),

	{Rmgr: pgdata.RmgrHeap2, Info: 0x00}: ignored("REWRITE: a logical-decoding mapping file under pg_logical/mappings (wal_level=logical, a catalog rewritten while a logical slot exists); replication slots are not carried to a new compute (pg_replslot starts empty), and nothing else reads those files"),
	{Rmgr: pgdata.RmgrHeap2, Info: 0x10}: ingested(blocksRedo + imagesKept),
	{Rmgr: pgdata.RmgrHeap2, Info: 0x20}: ingested(blocksRedo + imagesKept),
	{Rmgr: pgdata.RmgrHeap2, Info: 0x30}: ingested(blocksRedo + imagesKept),
	{Rmgr: pgdata.RmgrHeap2, Info: 0x40}: ingested(blocksRedo + " (the heap page and the visibility-map page it sets bits on)" + imagesKept),
	{Rmgr: pgdata.RmgrHeap2, Info: 0x50}: ingested(blocksRedo + imagesKept + vmClear),
	{Rmgr: pgdata.RmgrHeap2, Info: 0xD0}: ingested(blocksRedo + imagesKept + vmClear),
	{Rmgr: pgdata.RmgrHeap2, Info: 0x60}: ingested(blocksRedo + imagesKept + vmClear),
	{Rmgr: pgdata.RmgrHeap2, Info: 0x70}: ignored("NEW_CID: command ids of catalog tuples for logical decoding (wal_level=logical); no block reference, heap2_redo does nothing with it"),

	{Rmgr: pgdata.RmgrHeap, Info: 0x00}: ingested(blocksRedo + imagesKept + vmClear),
	{Rmgr: pgdata.RmgrHeap, Info: 0x80}: ingested(blocksRedo + " (initializes the page)" + imagesKept + vmClear),
	{Rmgr: pgdata.RmgrHeap, Info: 0x10}: ingested(blocksRedo + imagesKept + vmClear),
	{Rmgr: pgdata.RmgrHeap, Info: 0x20}: ingested(blocksRedo + imagesKept + vmClear),
	{Rmgr: pgdata.RmgrHeap, Info: 0xA0}: ingested(blocksRedo + " (initializes the new page)" + imagesKept + vmClear),
	{Rmgr: pgdata.RmgrHeap, Info: 0x40}: ingested(blocksRedo + imagesKept + vmClear),
	{Rmgr: pgdata.RmgrHeap, Info: 0xC0}: ingested(blocksRedo + " (initializes the page)" + imagesKept + vmClear),
	{Rmgr: pgdata.RmgrHeap, Info: 0x30}: ignored("TRUNCATE: the TRUNCATE command for logical decoding; the storage changes come as Storage and Transaction records, and heap_redo does nothing with it"),
	{Rmgr: pgdata.RmgrHeap, Info: 0x50}: ingested(blocksRedo + imagesKept),
	{Rmgr: pgdata.RmgrHeap, Info: 0x60}: ingested(blocksRedo + imagesKept + vmClear),
	{Rmgr: pgdata.RmgrHeap, Info: 0x70}: ingested(blocksRedo + imagesKept),

	{Rmgr: pgdata.RmgrBtree, Info: 0x00}: ingested(blocksRedo + imagesKept),
	{Rmgr: pgdata.RmgrBtree, Info: 0x10}: ingested(blocksRedo + imagesKept),
	{Rmgr: pgdata.RmgrBtree, Info: 0x20}: ingested(blocksRedo + imagesKept),
	{Rmgr: pgdata.RmgrBtree, Info: 0x30}: ingested(blocksRedo + imagesKept),
	{Rmgr: pgdata.RmgrBtree, Info: 0x40}: ingested(blocksRedo + imagesKept),
	{Rmgr: pgdata.RmgrBtree, Info: 0x50}: ingested(blocksRedo + imagesKept),
	{Rmgr: pgdata.RmgrBtree, Info: 0x60}: ingested(blocksRedo + imagesKept),
	{Rmgr: pgdata.RmgrBtree, Info: 0x70}: ingested(blocksRedo + imagesKept),
	{Rmgr: pgdata.RmgrBtree, Info: 0x80}: ingested(blocksRedo + imagesKept),
	{Rmgr: pgdata.RmgrBtree, Info: 0x90}: ingested(blocksRedo + imagesKept),
	{Rmgr: pgdata.RmgrBtree, Info: 0xA0}: ingested(blocksRedo + imagesKept),
	{Rmgr: pgdata.RmgrBtree, Info: 0xB0}: ingested(blocksRedo + imagesKept),
	{Rmgr: pgdata.RmgrBtree, Info: 0xC0}: ingested(blocksRedo + imagesKept),
	{Rmgr: pgdata.RmgrBtree, Info: 0xD0}: ignored("REUSE_PAGE: " + standbyOnly),
	{Rmgr: pgdata.RmgrBtree, Info: 0xE0}: ingested(blocksRedo + imagesKept),

	{Rmgr: pgdata.RmgrHash, Info: 0x00}: ingested(blocksRedo),
	{Rmgr: pgdata.RmgrHash, Info: 0x10}: ingested(blocksRedo),
	{Rmgr: pgdata.RmgrHash, Info: 0x20}: ingested(blocksRedo),
	{Rmgr: pgdata.RmgrHash, Info: 0x30}: ingested(blocksRedo),
	{Rmgr: pgdata.RmgrHash, Info: 0x40}: ingested(blocksRedo + " (the bucket pages _hash_alloc_buckets adds without WAL become zero pages up to the new one)"),
	{Rmgr: pgdata.RmgrHash, Info: 0x50}: ingested(blocksRedo),
	{Rmgr: pgdata.RmgrHash, Info: 0x60}: ingested(blocksRedo),
	{Rmgr: pgdata.RmgrHash, Info: 0x70}: ingested(blocksRedo),
	{Rmgr: pgdata.RmgrHash, Info: 0x80}: ingested(blocksRedo),
	{Rmgr: pgdata.RmgrHash, Info: 0x90}: ingested(blocksRedo),
	{Rmgr: pgdata.RmgrHash, Info: 0xA0}: ingested(blocksRedo),
	{Rmgr: pgdata.RmgrHash, Info: 0xB0}: ingested(blocksRedo),
	{Rmgr: pgdata.RmgrHash, Info: 0xC0}: ingested(blocksRedo),

	{Rmgr: pgdata.RmgrGin, Info: 0x10}: ingested(blocksRedo),
	{Rmgr: pgdata.RmgrGin, Info: 0x20}: ingested(blocksRedo),
	{Rmgr: pgdata.RmgrGin, Info: 0x30}: ingested(blocksRedo),
	{Rmgr: pgdata.RmgrGin, Info: 0x40}: ingested(blocksRedo),
	{Rmgr: pgdata.RmgrGin, Info: 0x50}: ingested(blocksRedo),
	{Rmgr: pgdata.RmgrGin, Info: 0x60}: ingested(blocksRedo),
	{Rmgr: pgdata.RmgrGin, Info: 0x70}: ingested(blocksRedo),
	{Rmgr: pgdata.RmgrGin, Info: 0x80}: ingested(blocksRedo),
	{Rmgr: pgdata.RmgrGin, Info: 0x90}: ingested(blocksRedo),

	{Rmgr: pgdata.RmgrGist, Info: 0x00}: ingested(blocksRedo),
	{Rmgr: pgdata.RmgrGist, Info: 0x10}: ingested(blocksRedo),
	{Rmgr: pgdata.RmgrGist, Info: 0x20}: ignored("PAGE_REUSE: " + standbyOnly),
	{Rmgr: pgdata.RmgrGist, Info: 0x30}: ingested(blocksRedo),
	{Rmgr: pgdata.RmgrGist, Info: 0x60}: ingested(blocksRedo),
	{Rmgr: pgdata.RmgrGist, Info: 0x70}: ignored("ASSIGN_LSN: no block reference; written only to give the pages of a GiST index whose WAL is skipped (wal_level=minimal) distinct fake LSNs (gistGetFakeLSN), gist_redo does nothing"),

	{Rmgr: pgdata.RmgrSequence, Info: 0x00}: ingested(blocksRedo + " (the whole sequence page, init fork too for unlogged sequences)"),

	{Rmgr: pgdata.RmgrSPGist, Info: 0x10}: ingested(blocksRedo),
	{Rmgr: pgdata.RmgrSPGist, Info: 0x20}: ingested(blocksRedo),
	{Rmgr: pgdata.RmgrSPGist, Info: 0x30}: ingested(blocksRedo),
	{Rmgr: pgdata.RmgrSPGist, Info: 0x40}: ingested(blocksRedo),
	{Rmgr: pgdata.RmgrSPGist, Info: 0x50}: ingested(blocksRedo),
	{Rmgr: pgdata.RmgrSPGist, Info: 0x60}: ingested(blocksRedo),
	{Rmgr: pgdata.RmgrSPGist, Info: 0x70}: ingested(blocksRedo),
	{Rmgr: pgdata.RmgrSPGist, Info: 0x80}: ingested(blocksRedo),

	{Rmgr: pgdata.RmgrBRIN, Info: 0x00}: ingested(blocksRedo),
	{Rmgr: pgdata.RmgrBRIN, Info: 0x10}: ingested(blocksRedo),
	{Rmgr: pgdata.RmgrBRIN, Info: 0x90}: ingested(blocksRedo + " (initializes the page)"),
	{Rmgr: pgdata.RmgrBRIN, Info: 0x20}: ingested(blocksRedo),
	{Rmgr: pgdata.RmgrBRIN, Info: 0xA0}: ingested(blocksRedo + " (initializes the new page)"),
	{Rmgr: pgdata.RmgrBRIN, Info: 0x30}: ingested(blocksRedo),
	{Rmgr: pgdata.RmgrBRIN, Info: 0x40}: ingested(blocksRedo),
	{Rmgr: pgdata.RmgrBRIN, Info: 0x50}: ingested(blocksRedo),

	{Rmgr: pgdata.RmgrCommitTs, Info: 0x00}: ignored("ZEROPAGE: written only with track_commit_timestamp=on; a compute runs with it off and pg_commit_ts starts empty, so commit timestamps are not carried to a new compute"),
	{Rmgr: pgdata.RmgrCommitTs, Info: 0x10}: ignored("TRUNCATE: as ZEROPAGE, pg_commit_ts is not carried"),

	{Rmgr: pgdata.RmgrReplicationOrigin, Info: 0x00}: ingested("sets the origin's remote LSN in pg_logical/replorigin_checkpoint, which a basebackup writes (CheckPointReplicationOrigin's file)"),
	{Rmgr: pgdata.RmgrReplicationOrigin, Info: 0x10}: ingested("removes the origin from pg_logical/replorigin_checkpoint"),

	{Rmgr: pgdata.RmgrGeneric, Info: 0x00}: ingested(blocksRedo + " (generic_redo: contrib bloom and other generic_xlog users)" + imagesKept),

	{Rmgr: pgdata.RmgrLogicalMessage, Info: 0x00}: ignored("MESSAGE: pg_logical_emit_message's payload for logical decoding; no block reference, logicalmsg_redo does nothing"),
}

// ClassifyRecord returns what ingest does with a record of resource
// manager rmid with xl_info info. A record type PostgreSQL 15 does not
// define (an unused info value, a custom resource manager) is
// unsupported.
func ClassifyRecord(rmid pgdata.RmgrID, info uint8) RecordHandling {
	t, ok := pgdata.TypeOf(rmid, info)
	if !ok {
		return RecordHandling{Unsupported, "not a record type of PostgreSQL 15's built-in resource managers"}
	}
	h, ok := recordHandlings[t]
	if !ok {
		return RecordHandling{Unsupported, "record type not classified"}
	}
	return h
}

// WriteRecordTable writes the Markdown table of every record type
// PostgreSQL 15 writes and what ingest does with it: the body of
// docs/wal-records.md.
func WriteRecordTable(w io.Writer) error {
	var b strings.Builder
	b.WriteString("| Record type | Info | Handling | How, or why |\n")
	b.WriteString("|---|---|---|---|\n")
	for _, t := range pgdata.RecordTypes() {
		h := ClassifyRecord(t.Rmgr, t.Info)
		fmt.Fprintf(&b, "| %s | 0x%02X | %s | %s |\n", t, t.Info, h.Handling, strings.ReplaceAll(h.How, "|", `\|`))
	}
	_, err := io.WriteString(w, b.String())
	return err
}
