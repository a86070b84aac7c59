package pgdata

import "fmt"

// RmgrID identifies a WAL resource manager (PostgreSQL's RmgrId); the
// values and names follow access/rmgrlist.h of PostgreSQL 15.
type RmgrID uint8

// The built-in resource managers of PostgreSQL 15.
const (
	RmgrXLOG RmgrID = iota
	RmgrTransaction
	RmgrStorage
	RmgrCLOG
	RmgrDatabase
	RmgrTablespace
	RmgrMultiXact
	RmgrRelMap
	RmgrStandby
	RmgrHeap2
	RmgrHeap
	RmgrBtree
	RmgrHash
	RmgrGin
	RmgrGist
	RmgrSequence
	RmgrSPGist
	RmgrBRIN
	RmgrCommitTs
	RmgrReplicationOrigin
	RmgrGeneric
	RmgrLogicalMessage
)

// RmgrMaxBuiltin is the highest built-in resource manager id.
const RmgrMaxBuiltin = RmgrLogicalMessage

var rmgrNames = [...]string{
	"XLOG", "Transaction", "Storage", "CLOG", "Database", "Tablespace",
	"MultiXact", "RelMap", "Standby", "Heap2", "Heap", "Btree", "Hash",
	"Gin", "Gist", "Sequence", "SPGist", "BRIN", "CommitTs",
	"ReplicationOrigin", "Generic", "LogicalMessage",
}

// String returns the resource manager's name as pg_waldump prints it;
// custom resource managers (ids 128-255) print as "custom###".
func (r RmgrID) String() string {
	if int(r) < len(rmgrNames) {
		return rmgrNames[r]
	}
	return fmt.Sprintf("custom%03d", uint8(r))
}

// Builtin reports whether r is one of PostgreSQL 15's built-in resource
// managers.
func (r RmgrID) Builtin() bool { return r <= RmgrMaxBuiltin }
