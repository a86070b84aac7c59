package key

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"

	"github.com/zenithdb/zenith/repo/pgdata"
)

// Size is the length of an encoded key in bytes.
const Size = 18

// Key is one key of the repository, in its encoded form; comparing two keys
// byte by byte (Compare) orders them as their fields.
type Key [Size]byte

// The values of field1: what kind of thing a key names.
const (
	kindDBDir    = 0x00
	kindRelation = 0x01
	kindSLRU     = 0x02
	kindTwoPhase = 0x03
	kindControl  = 0x04
	kindAux      = 0x05
	kindMax      = 0xFF
)

// sizeBlock is field6 of relation and SLRU segment sizes: InvalidBlockNumber,
// never a real block.
const sizeBlock = pgdata.InvalidBlockNumber

// Min is the smallest key; Max is larger than every key that names
// something, and is the exclusive end of the whole key space.
var (
	Min = Key{}
	Max = Key{kindMax, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF}
)

func make6(f1 uint8, f2, f3, f4 uint32, f5 uint8, f6 uint32) Key {
	var k Key
	k[0] = f1
	binary.BigEndian.PutUint32(k[1:5], f2)
	binary.BigEndian.PutUint32(k[5:9], f3)
	binary.BigEndian.PutUint32(k[9:13], f4)
	k[13] = f5
	binary.BigEndian.PutUint32(k[14:18], f6)
	return k
}

func (k Key) f2() uint32 { return binary.BigEndian.Uint32(k[1:5]) }
func (k Key) f3() uint32 { return binary.BigEndian.Uint32(k[5:9]) }
func (k Key) f4() uint32 { return binary.BigEndian.Uint32(k[9:13]) }
func (k Key) f6() uint32 { return binary.BigEndian.Uint32(k[14:18]) }

// DBDir is the key of the list of databases.
func DBDir() Key { return make6(kindDBDir, 0, 0, 0, 0, 0) }

// TablespaceDir is the key of the list of tablespaces other than
// pg_default and pg_global, with their locations.
func TablespaceDir() Key { return make6(kindDBDir, 0, 0, 0, 0, 1) }

// RelMap is the key of a database's relmapper file (pg_filenode.map);
// dbNode 0 with the global tablespace is global/pg_filenode.map.
func RelMap(spcNode, dbNode uint32) Key { return make6(kindRelation, spcNode, dbNode, 0, 0, 0) }

// RelDir is the key of the list of a database's relations.
func RelDir(spcNode, dbNode uint32) Key { return make6(kindRelation, spcNode, dbNode, 0, 0, 1) }

// RelBlock is the key of one block of one fork of a relation. rel.RelNode
// must not be 0 and blk must not be InvalidBlockNumber (those name the
// database's metadata and the relation's size).
func RelBlock(rel pgdata.RelFileNode, fork pgdata.ForkNumber, blk pgdata.BlockNumber) Key {
	return make6(kindRelation, rel.SpcNode, rel.DbNode, rel.RelNode, uint8(fork), blk)
}

// RelSize is the key of the size, in blocks, of one fork of a relation.
func RelSize(rel pgdata.RelFileNode, fork pgdata.ForkNumber) Key {
	return RelBlock(rel, fork, sizeBlock)
}

// RelRange is the range of every key of one fork of a relation: its blocks
// and its size.
func RelRange(rel pgdata.RelFileNode, fork pgdata.ForkNumber) Range {
	return Range{Start: RelBlock(rel, fork, 0), End: RelSize(rel, fork).Next()}
}

// DBRange is the range of every key of a database: its relmapper file, its
// relation directory and all its relations.
func DBRange(spcNode, dbNode uint32) Range {
	return Range{Start: RelMap(spcNode, dbNode), End: RelMap(spcNode, dbNode+1)}
}

// SLRU identifies one of the SLRUs the page server stores.
type SLRU uint8

// The SLRUs (pg_xact, pg_multixact/offsets, pg_multixact/members).
const (
	Clog SLRU = iota
	MultiXactOffsets
	MultiXactMembers
)

var slruNames = [...]string{"pg_xact", "pg_multixact/offsets", "pg_multixact/members"}

// String returns the SLRU's directory in a data directory.
func (s SLRU) String() string {
	if int(s) < len(slruNames) {
		return slruNames[s]
	}
	return fmt.Sprintf("slru%d", uint8(s))
}

// SLRUDir is the key of the list of an SLRU's segments.
func SLRUDir(s SLRU) Key { return make6(kindSLRU, uint32(s), 0, 0, 0, 0) }

// SLRUPage is the key of one page of one segment of an SLRU.
func SLRUPage(s SLRU, segNo uint32, blk uint32) Key {
	return make6(kindSLRU, uint32(s), segNo, 0, 1, blk)
}

// SLRUSegmentSize is the key of the size, in pages, of one SLRU segment.
func SLRUSegmentSize(s SLRU, segNo uint32) Key { return SLRUPage(s, segNo, sizeBlock) }

// TwoPhaseDir is the key of the list of prepared transactions.
func TwoPhaseDir() Key { return make6(kindTwoPhase, 0, 0, 0, 0, 0) }

// TwoPhaseFile is the key of a prepared transaction's state file
// (pg_twophase/<xid>).
func TwoPhaseFile(xid uint32) Key { return make6(kindTwoPhase, 0, 0, 0, 1, xid) }

// Control is the key of pg_control (ControlFileData).
func Control() Key { return make6(kindControl, 0, 0, 0, 0, 0) }

// Checkpoint is the key of the latest checkpoint (the CheckPoint struct).
func Checkpoint() Key { return make6(kindControl, 0, 0, 0, 0, 1) }

// AuxFile is the key of a small auxiliary file, by its path in the data
// directory. Two paths may share a key (a hash collision), so the value
// must hold the path as well as the contents.
func AuxFile(path string) Key {
	sum := sha256.Sum256([]byte(path))
	var k Key
	k[0] = kindAux
	copy(k[1:], sum[:Size-1])
	return k
}

// Compare returns -1, 0 or +1 as k sorts before, equal to or after o.
func (k Key) Compare(o Key) int { return bytes.Compare(k[:], o[:]) }

// Less reports whether k sorts before o.
func (k Key) Less(o Key) bool { return k.Compare(o) < 0 }

// Next returns the smallest key after k, for the exclusive end of a range
// that ends at k. Next of Max is Max.
func (k Key) Next() Key {
	for i := Size - 1; i >= 0; i-- {
		k[i]++
		if k[i] != 0 {
			return k
		}
	}
	return Max
}

// Hex prints the key as 36 hexadecimal characters, as layer file names do.
func (k Key) Hex() string { return hex.EncodeToString(k[:]) }

// ParseHex parses a key printed by Hex.
func ParseHex(s string) (Key, error) {
	var k Key
	if len(s) != 2*Size {
		return k, fmt.Errorf("invalid key %q: want %d hexadecimal characters", s, 2*Size)
	}
	if _, err := hex.Decode(k[:], []byte(s)); err != nil {
		return k, fmt.Errorf("invalid key %q: %w", s, err)
	}
	return k, nil
}

// RelBlock decodes a relation block key; ok is false for any other key.
func (k Key) RelBlock() (rel pgdata.RelFileNode, fork pgdata.ForkNumber, blk pgdata.BlockNumber, ok bool) {
	if k[0] != kindRelation || k.f4() == 0 || k.f6() == sizeBlock {
		return rel, 0, 0, false
	}
	return pgdata.RelFileNode{SpcNode: k.f2(), DbNode: k.f3(), RelNode: k.f4()}, pgdata.ForkNumber(k[13]), k.f6(), true
}

// String describes the key for people ("rel 1663/5/16384.main blk 7").
func (k Key) String() string {
	switch k[0] {
	case kindDBDir:
		switch k {
		case DBDir():
			return "dbdir"
		case TablespaceDir():
			return "tblspcdir"
		}
	case kindRelation:
		spc, db, rel, fork, blk := k.f2(), k.f3(), k.f4(), pgdata.ForkNumber(k[13]), k.f6()
		switch {
		case rel == 0 && fork == 0 && blk == 0:
			return fmt.Sprintf("relmap %d/%d", spc, db)
		case rel == 0 && fork == 0 && blk == 1:
			return fmt.Sprintf("reldir %d/%d", spc, db)
		case rel != 0 && blk == sizeBlock:
			return fmt.Sprintf("relsize %d/%d/%d.%s", spc, db, rel, fork)
		case rel != 0:
			return fmt.Sprintf("rel %d/%d/%d.%s blk %d", spc, db, rel, fork, blk)
		}
	case kindSLRU:
		s, seg, f4, f5, blk := SLRU(k.f2()), k.f3(), k.f4(), k[13], k.f6()
		switch {
		case seg == 0 && f4 == 0 && f5 == 0 && blk == 0:
			return fmt.Sprintf("slrudir %s", s)
		case f4 == 0 && f5 == 1 && blk == sizeBlock:
			return fmt.Sprintf("slrusize %s/%04X", s, seg)
		case f4 == 0 && f5 == 1:
			return fmt.Sprintf("slru %s/%04X blk %d", s, seg, blk)
		}
	case kindTwoPhase:
		if k == TwoPhaseDir() {
			return "twophasedir"
		}
		if k.f2() == 0 && k.f3() == 0 && k.f4() == 0 && k[13] == 1 {
			return fmt.Sprintf("twophase %d", k.f6())
		}
	case kindControl:
		switch k {
		case Control():
			return "pg_control"
		case Checkpoint():
			return "checkpoint"
		}
	case kindAux:
		return "aux " + k.Hex()[2:]
	}
	return "key " + k.Hex()
}

// Range is the half-open key range [Start, End).
type Range struct {
	Start, End Key
}

// All is the whole key space.
var All = Range{Start: Min, End: Max}

// Contains reports whether k is in r.
func (r Range) Contains(k Key) bool { return !k.Less(r.Start) && k.Less(r.End) }

// Overlaps reports whether r and o have a key in common.
func (r Range) Overlaps(o Range) bool { return r.Start.Less(o.End) && o.Start.Less(r.End) }

// Empty reports whether r holds no key.
func (r Range) Empty() bool { return !r.Start.Less(r.End) }

// String prints the range as the hex of its ends.
func (r Range) String() string { return r.Start.Hex() + "-" + r.End.Hex() }
