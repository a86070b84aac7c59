package workload

// steps is the mixed workload, in order. Each step's records list what it
// exercises in PostgreSQL (the redo routine of each record type named
// there runs when the WAL is replayed); the package doc has the overview.
func steps() []step {
	return []step{
		{
			name: "schema",
			// CREATE TABLE / CREATE INDEX: smgrcreate (Storage CREATE), catalog
			// inserts (heap_insert, btree inserts), an index build logging its
			// pages (log_newpage_range, XLOG FPI), commit with invalidations.
			records: []string{"Storage/CREATE", "Heap/INSERT", "Btree/INSERT_LEAF", "Transaction/COMMIT"},
			run:     stepSchema,
		},
		{
			name: "sequences",
			// nextval logs every SEQ_LOG_VALS (32) values and after each
			// checkpoint; setval and ALTER SEQUENCE RESTART log too (seq_redo).
			records: []string{"Sequence/LOG"},
			run:     stepSequences,
		},
		{
			name: "heap_insert",
			// heap_insert one row per statement, INSERT ... SELECT unnest
			// (still one heap_insert per row), INSERT ... ON CONFLICT
			// (speculative insertion: heap_confirm); btree inserts with leaf
			// and upper splits, a new root, and deduplication of the 8-valued
			// grp index (_bt_dedup_pass).
			records: []string{
				"Heap/INSERT", "Heap/INSERT+INIT", "Heap/HEAP_CONFIRM", "Heap/HOT_UPDATE",
				"Btree/INSERT_LEAF", "Btree/INSERT_UPPER", "Btree/SPLIT_L", "Btree/SPLIT_R",
				"Btree/NEWROOT", "Btree/DEDUP", "Btree/INSERT_POST",
			},
			run: stepHeapInsert,
		},
		{
			name: "copy",
			// COPY uses heap_multi_insert (XLOG_HEAP2_MULTI_INSERT, one record
			// per page); COPY FREEZE into a table created in the same
			// transaction sets all-frozen pages and their visibility-map bits.
			records: []string{"Heap2/MULTI_INSERT", "Heap2/MULTI_INSERT+INIT", "Heap2/VISIBLE", "Btree/INSERT_LEAF"},
			run:     stepCopy,
		},
		{
			name: "toast",
			// Values over TOAST_TUPLE_THRESHOLD go to the TOAST relation in
			// 1996-byte chunks (toast_save_datum), compressed or not; updating
			// and deleting them deletes the old chunks (toast_delete_datum).
			records: []string{"Heap/INSERT", "Heap/DELETE", "Heap/UPDATE", "Btree/INSERT_LEAF"},
			run:     stepToast,
		},
		{
			name: "update",
			// HOT updates of a non-indexed column (heap_update on the same
			// page), with page pruning of the HOT chains they leave
			// (heap_page_prune); non-HOT updates of indexed columns.
			records: []string{"Heap/HOT_UPDATE", "Heap/UPDATE", "Heap2/PRUNE", "Btree/INSERT_LEAF"},
			run:     stepUpdate,
		},
		{
			name:    "delete",
			records: []string{"Heap/DELETE"},
			run:     stepDelete,
		},
		{
			name: "row_locks",
			// SELECT FOR KEY SHARE / FOR SHARE from concurrent transactions on
			// the same rows (heap_lock_tuple; a MultiXact once a second locker
			// comes), an update of locked rows (a MultiXact holding an updater
			// and a locker), a lock that follows an update chain
			// (heap_lock_updated_tuple), and updates after the lockers end.
			records: []string{"Heap/LOCK", "MultiXact/CREATE_ID", "Heap2/LOCK_UPDATED", "Heap/HOT_UPDATE", "Heap/UPDATE"},
			run:     stepRowLocks,
		},
		{
			name: "vacuum",
			// VACUUM after the big delete: pruning, heap vacuum, visibility-map
			// bits, btree vacuum, and deletion of the emptied btree pages
			// (_bt_pagedel: half-dead, then unlinked).
			records: []string{
				"Heap2/PRUNE", "Heap2/VACUUM", "Heap2/VISIBLE", "Heap/INPLACE",
				"Btree/VACUUM", "Btree/MARK_PAGE_HALFDEAD", "Btree/UNLINK_PAGE",
			},
			run: stepVacuum,
		},
		{
			name: "hash",
			// A hash index grown from empty: meta and bitmap pages, inserts,
			// bucket splits, overflow pages for a skewed key; VACUUM after a
			// delete removes entries and squeezes overflow pages.
			records: []string{
				"Hash/INIT_META_PAGE", "Hash/INIT_BITMAP_PAGE", "Hash/INSERT",
				"Hash/SPLIT_ALLOCATE_PAGE", "Hash/SPLIT_PAGE", "Hash/SPLIT_COMPLETE",
				"Hash/ADD_OVFL_PAGE", "Hash/DELETE", "Hash/SQUEEZE_PAGE", "Hash/UPDATE_META_PAGE",
			},
			run: stepHash,
		},
		{
			name: "gin",
			// GIN with fastupdate (pending list pages, then their cleanup into
			// the entry tree) and without (direct inserts, splits, posting
			// trees for a frequent key); VACUUM after a delete.
			records: []string{
				"Gin/INSERT_LISTPAGE", "Gin/UPDATE_META_PAGE", "Gin/DELETE_LISTPAGE",
				"Gin/INSERT", "Gin/SPLIT", "Gin/CREATE_PTREE", "Gin/VACUUM_PAGE", "Gin/VACUUM_DATA_LEAF_PAGE",
			},
			run: stepGin,
		},
		{
			name: "gist",
			// GiST inserts with page splits; VACUUM after deleting a region
			// removes entries and deletes emptied pages; a sorted index build
			// logs its pages (XLOG FPI).
			records: []string{"Gist/PAGE_UPDATE", "Gist/PAGE_SPLIT", "Gist/PAGE_DELETE", "XLOG/FPI"},
			run:     stepGist,
		},
		{
			name: "spgist",
			// SP-GiST radix tree over text and quad tree over points: leaf
			// adds, leaf moves, picksplits, node adds, prefix splits; VACUUM.
			records: []string{
				"SPGist/ADD_LEAF", "SPGist/MOVE_LEAFS", "SPGist/PICKSPLIT", "SPGist/ADD_NODE",
				"SPGist/SPLIT_TUPLE", "SPGist/VACUUM_LEAF", "SPGist/VACUUM_REDIRECT",
			},
			run: stepSPGist,
		},
		{
			name: "brin",
			// BRIN: index creation, summarization (revmap extension, new
			// summary tuples), summaries widened in place by later inserts,
			// desummarization.
			records: []string{"BRIN/CREATE_INDEX", "BRIN/INSERT", "BRIN/REVMAP_EXTEND", "BRIN/SAMEPAGE_UPDATE", "BRIN/DESUMMARIZE"},
			run:     stepBRIN,
		},
		{
			name: "two_phase",
			// PREPARE TRANSACTION then COMMIT PREPARED and ROLLBACK PREPARED,
			// one prepared transaction living across a checkpoint (its state
			// moves from WAL to pg_twophase).
			records: []string{"Transaction/PREPARE", "Transaction/COMMIT_PREPARED", "Transaction/ABORT_PREPARED", "XLOG/CHECKPOINT_ONLINE"},
			run:     stepTwoPhase,
		},
		{
			name: "subtransactions",
			// SAVEPOINT / ROLLBACK TO / RELEASE, more than
			// PGPROC_MAX_CACHED_SUBXIDS subtransactions (XLOG_XACT_ASSIGNMENT),
			// and a transaction that aborts.
			records: []string{"Transaction/COMMIT", "Transaction/ABORT", "Transaction/ASSIGNMENT"},
			run:     stepSubtransactions,
		},
		{
			name: "databases",
			// CREATE DATABASE with STRATEGY WAL_LOG (every page copied as a
			// WAL record) and FILE_COPY (checkpoint, then a file copy), a table
			// in each, and DROP DATABASE.
			records: []string{"Database/CREATE_WAL_LOG", "Database/CREATE_FILE_COPY", "Database/DROP", "XLOG/FPI", "Storage/CREATE"},
			run:     stepDatabases,
		},
		{
			name: "truncate",
			// TRUNCATE (a new relfilenode; the old files dropped at commit),
			// VACUUM truncating a heap's empty tail (smgrtruncate), and VACUUM
			// FULL (a rewrite logged page by page).
			records: []string{"Storage/CREATE", "Storage/TRUNCATE", "XLOG/FPI", "Transaction/COMMIT"},
			run:     stepTruncate,
		},
		{
			name: "vacuum_freeze",
			// VACUUM FREEZE (freezing tuples, all-frozen visibility-map bits)
			// and VACUUM FULL of a mapped catalog (relation map update).
			records: []string{"Heap2/FREEZE_PAGE", "Heap2/VISIBLE", "RelMap/UPDATE"},
			run:     stepVacuumFreeze,
		},
		{
			name: "wal_misc",
			// A logical decoding message, a restore point and a WAL segment
			// switch (the rest of the segment is skipped).
			records: []string{"LogicalMessage/MESSAGE", "XLOG/RESTORE_POINT", "XLOG/SWITCH"},
			run:     stepWALMisc,
		},
	}
}
