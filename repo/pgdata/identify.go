package pgdata

import "fmt"

// recordTypeNames maps each built-in resource manager's info values (the
// high four bits of xl_info, plus the INIT_PAGE bit where an rmgr uses
// it) to the names its rm_identify function gives them
// (access/rmgrdesc/*desc.c). The keys are xl_info & ~XLR_INFO_MASK, except
// for Transaction, which masks with XLOG_XACT_OPMASK.
var recordTypeNames = [...]map[uint8]string{
	RmgrXLOG: {
		0x00: "CHECKPOINT_SHUTDOWN", 0x10: "CHECKPOINT_ONLINE", 0x20: "NOOP",
		0x30: "NEXTOID", 0x40: "SWITCH", 0x50: "BACKUP_END",
		0x60: "PARAMETER_CHANGE", 0x70: "RESTORE_POINT", 0x80: "FPW_CHANGE",
		0x90: "END_OF_RECOVERY", 0xA0: "FPI_FOR_HINT", 0xB0: "FPI",
		0xD0: "OVERWRITE_CONTRECORD",
	},
	RmgrTransaction: {
		0x00: "COMMIT", 0x10: "PREPARE", 0x20: "ABORT", 0x30: "COMMIT_PREPARED",
		0x40: "ABORT_PREPARED", 0x50: "ASSIGNMENT", 0x60: "INVALIDATION",
	},
	RmgrStorage:    {0x10: "CREATE", 0x20: "TRUNCATE"},
	RmgrCLOG:       {0x00: "ZEROPAGE", 0x10: "TRUNCATE"},
	RmgrDatabase:   {0x00: "CREATE_FILE_COPY", 0x10: "CREATE_WAL_LOG", 0x20: "DROP"},
	RmgrTablespace: {0x00: "CREATE", 0x10: "DROP"},
	RmgrMultiXact: {
		0x00: "ZERO_OFF_PAGE", 0x10: "ZERO_MEM_PAGE", 0x20: "CREATE_ID", 0x30: "TRUNCATE_ID",
	},
	RmgrRelMap:  {0x00: "UPDATE"},
	RmgrStandby: {0x00: "LOCK", 0x10: "RUNNING_XACTS", 0x20: "INVALIDATIONS"},
	RmgrHeap2: {
		0x00: "REWRITE", 0x10: "PRUNE", 0x20: "VACUUM", 0x30: "FREEZE_PAGE",
		0x40: "VISIBLE", 0x50: "MULTI_INSERT", 0xD0: "MULTI_INSERT+INIT",
		0x60: "LOCK_UPDATED", 0x70: "NEW_CID",
	},
	RmgrHeap: {
		0x00: "INSERT", 0x80: "INSERT+INIT", 0x10: "DELETE", 0x20: "UPDATE",
		0xA0: "UPDATE+INIT", 0x40: "HOT_UPDATE", 0xC0: "HOT_UPDATE+INIT",
		0x30: "TRUNCATE", 0x50: "HEAP_CONFIRM", 0x60: "LOCK", 0x70: "INPLACE",
	},
	RmgrBtree: {
		0x00: "INSERT_LEAF", 0x10: "INSERT_UPPER", 0x20: "INSERT_META",
		0x30: "SPLIT_L", 0x40: "SPLIT_R", 0x50: "INSERT_POST", 0x60: "DEDUP",
		0x70: "DELETE", 0x80: "UNLINK_PAGE", 0x90: "UNLINK_PAGE_META",
		0xA0: "NEWROOT", 0xB0: "MARK_PAGE_HALFDEAD", 0xC0: "VACUUM",
		0xD0: "REUSE_PAGE", 0xE0: "META_CLEANUP",
	},
	RmgrHash: {
		0x00: "INIT_META_PAGE", 0x10: "INIT_BITMAP_PAGE", 0x20: "INSERT",
		0x30: "ADD_OVFL_PAGE", 0x40: "SPLIT_ALLOCATE_PAGE", 0x50: "SPLIT_PAGE",
		0x60: "SPLIT_COMPLETE", 0x70: "MOVE_PAGE_CONTENTS", 0x80: "SQUEEZE_PAGE",
		0x90: "DELETE", 0xA0: "SPLIT_CLEANUP", 0xB0: "UPDATE_META_PAGE",
		0xC0: "VACUUM_ONE_PAGE",
	},
	RmgrGin: {
		0x10: "CREATE_PTREE", 0x20: "INSERT", 0x30: "SPLIT", 0x40: "VACUUM_PAGE",
		0x90: "VACUUM_DATA_LEAF_PAGE", 0x50: "DELETE_PAGE", 0x60: "UPDATE_META_PAGE",
		0x70: "INSERT_LISTPAGE", 0x80: "DELETE_LISTPAGE",
	},
	RmgrGist: {
		0x00: "PAGE_UPDATE", 0x10: "DELETE", 0x20: "PAGE_REUSE", 0x30: "PAGE_SPLIT",
		0x60: "PAGE_DELETE", 0x70: "ASSIGN_LSN",
	},
	RmgrSequence: {0x00: "LOG"},
	RmgrSPGist: {
		0x10: "ADD_LEAF", 0x20: "MOVE_LEAFS", 0x30: "ADD_NODE", 0x40: "SPLIT_TUPLE",
		0x50: "PICKSPLIT", 0x60: "VACUUM_LEAF", 0x70: "VACUUM_ROOT", 0x80: "VACUUM_REDIRECT",
	},
	RmgrBRIN: {
		0x00: "CREATE_INDEX", 0x10: "INSERT", 0x90: "INSERT+INIT", 0x20: "UPDATE",
		0xA0: "UPDATE+INIT", 0x30: "SAMEPAGE_UPDATE", 0x40: "REVMAP_EXTEND",
		0x50: "DESUMMARIZE",
	},
	// CommitTs and ReplicationOrigin compare the whole xl_info, flag bits
	// included (commit_ts_identify, replorigin_identify).
	RmgrCommitTs:          {0x00: "ZEROPAGE", 0x10: "TRUNCATE"},
	RmgrReplicationOrigin: {0x00: "SET", 0x10: "DROP"},
	RmgrGeneric:           {0x00: "Generic"},
	RmgrLogicalMessage:    {0x00: "MESSAGE"},
}

// recordTypes is recordTypeNames indexed by rmgr and key>>4 (every key is
// a multiple of 0x10), so naming a record costs no map lookup.
var recordTypes = func() (t [RmgrMaxBuiltin + 1][16]string) {
	for rmid, names := range recordTypeNames {
		for key, name := range names {
			t[rmid][key>>4] = name
		}
	}
	return t
}()

// RecordTypeName names the kind of a record of resource manager rmid with
// xl_info info, as pg_waldump's "desc:" begins ("INSERT", "COMMIT",
// "FPI_FOR_HINT"): PostgreSQL 15's rm_identify. An info value the rmgr
// does not define, or a custom rmgr, gives "UNKNOWN (%x)" as pg_waldump
// prints it.
func RecordTypeName(rmid RmgrID, info uint8) string {
	key := info &^ XLRInfoMask
	switch rmid {
	case RmgrTransaction:
		key = info & 0x70 // XLOG_XACT_OPMASK
	case RmgrCommitTs, RmgrReplicationOrigin:
		key = info
	case RmgrGeneric:
		return "Generic"
	}
	if rmid.Builtin() && key&XLRInfoMask == 0 {
		if name := recordTypes[rmid][key>>4]; name != "" {
			return name
		}
	}
	return fmt.Sprintf("UNKNOWN (%x)", info&^XLRInfoMask)
}

// TypeName is RecordTypeName of the record.
func (r *Record) TypeName() string { return RecordTypeName(r.Header.Rmid, r.Header.Info) }
