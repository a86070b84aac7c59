package pgdata

// RecordType is one kind of record of a built-in resource manager of
// PostgreSQL 15: a resource manager and the bits of xl_info that tell its
// kinds apart, as its rm_identify function does (the high four bits, with
// the INIT_PAGE bit where the rmgr uses it; XLOG_XACT_OPMASK for
// Transaction; the whole info for CommitTs and ReplicationOrigin; nothing
// for Generic, which has one kind).
type RecordType struct {
	Rmgr RmgrID
	Info uint8
}

// TypeOf returns the record type of a record of resource manager rmid with
// xl_info info; ok is false for an info value PostgreSQL 15 does not
// define and for custom resource managers.
func TypeOf(rmid RmgrID, info uint8) (t RecordType, ok bool) {
	if !rmid.Builtin() {
		return RecordType{}, false
	}
	key := info &^ XLRInfoMask
	switch rmid {
	case RmgrTransaction:
		key = info & 0x70 // XLOG_XACT_OPMASK
	case RmgrCommitTs, RmgrReplicationOrigin:
		key = info
	case RmgrGeneric:
		key = 0
	}
	if key&XLRInfoMask != 0 || recordTypes[rmid][key>>4] == "" {
		return RecordType{}, false
	}
	return RecordType{rmid, key}, true
}

// String names the type as pg_waldump's --stats=record does: "Heap/INSERT".
func (t RecordType) String() string { return t.Rmgr.String() + "/" + t.Name() }

// Name is the type's name within its resource manager ("INSERT").
func (t RecordType) Name() string { return RecordTypeName(t.Rmgr, t.Info) }

// RecordTypes lists every record type of PostgreSQL 15's built-in
// resource managers, ordered by resource manager and info.
func RecordTypes() []RecordType {
	var ts []RecordType
	for rmid := range RmgrMaxBuiltin + 1 {
		for i, name := range recordTypes[rmid] {
			if name != "" {
				ts = append(ts, RecordType{rmid, uint8(i << 4)})
			}
		}
	}
	return ts
}
