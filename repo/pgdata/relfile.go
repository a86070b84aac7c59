package pgdata

import "fmt"

// ForkNumber identifies a fork of a relation (common/relpath.h).
type ForkNumber uint8

// The forks of a relation.
const (
	ForkMain ForkNumber = iota
	ForkFSM
	ForkVM
	ForkInit
)

// MaxFork is the highest valid fork number (MAX_FORKNUM).
const MaxFork = ForkInit

var forkNames = [...]string{"main", "fsm", "vm", "init"}

// String returns the fork's name as PostgreSQL spells it (forkNames[]).
func (f ForkNumber) String() string {
	if f <= MaxFork {
		return forkNames[f]
	}
	return fmt.Sprintf("fork%d", uint8(f))
}

// Valid reports whether f is a fork PostgreSQL 15 knows.
func (f ForkNumber) Valid() bool { return f <= MaxFork }

// ParseFork parses a fork name ("main", "fsm", "vm", "init").
func ParseFork(s string) (ForkNumber, error) {
	for i, n := range forkNames {
		if n == s {
			return ForkNumber(i), nil
		}
	}
	return 0, fmt.Errorf("unknown fork %q: want main, fsm, vm or init", s)
}

// Well-known OIDs of PostgreSQL 15 (pg_tablespace.dat).
const (
	DefaultTablespaceOID = 1663 // pg_default
	GlobalTablespaceOID  = 1664 // pg_global
)

// RelFileNode names the files of a relation: tablespace, database and
// relfilenode OIDs (storage/relfilenode.h). Shared catalogs have DbNode 0.
type RelFileNode struct {
	SpcNode uint32
	DbNode  uint32
	RelNode uint32
}

// String prints the relation as pg_waldump does: "spc/db/rel".
func (r RelFileNode) String() string {
	return fmt.Sprintf("%d/%d/%d", r.SpcNode, r.DbNode, r.RelNode)
}

// BlockNumber is a block's number within one fork of a relation.
type BlockNumber = uint32

// InvalidBlockNumber is PostgreSQL's InvalidBlockNumber.
const InvalidBlockNumber BlockNumber = 0xFFFFFFFF
