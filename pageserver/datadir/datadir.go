package datadir

import (
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/zenithdb/zenith/repo/pgdata"
)

// The directory values of the data-directory model: what lists the
// databases, the relations of each database, the segments of each SLRU, the
// prepared transactions and the auxiliary files. Each is stored as one
// image value under its key (key.DBDir, key.RelDir, key.SLRUDir,
// key.TwoPhaseDir, and key.AuxFile(AuxDirPath)).
//
// Every directory has the same encoding, a sorted set of fixed-width
// entries, all integers big-endian:
//
//	magic   1 byte   which directory this is (dirMagic*), so a value read
//	                 under the wrong key is an error, not a misreading
//	version 1 byte   dirVersion
//	count   4 bytes  number of entries
//	entries count × width bytes, strictly ascending as byte strings
//
// with these entries:
//
//	DBDir       8 bytes  spcnode(4) dbnode(4)
//	RelDir      5 bytes  relnode(4) forks(1): bit f set = fork f exists
//	SLRUDir     4 bytes  segment number
//	TwoPhaseDir 4 bytes  xid
//
// The auxiliary-file list is not fixed-width and has its own encoding
// (EncodeAuxDir).

const (
	dirMagicDB       = 'D'
	dirMagicRel      = 'R'
	dirMagicSLRU     = 'S'
	dirMagicTwoPhase = 'T'
	dirMagicAux      = 'A'
	dirVersion       = 1
	dirHeaderSize    = 6
)

// ErrMalformedDir is wrapped by every error decoding a directory value.
var ErrMalformedDir = errors.New("malformed directory value")

// Database names one database: its tablespace and its OID. The global
// "database" (shared catalogs) is {GlobalTablespaceOID, 0}.
type Database struct {
	SpcNode, DbNode uint32
}

// CompareDatabase orders databases by tablespace, then OID.
func CompareDatabase(a, b Database) int {
	return cmp.Or(cmp.Compare(a.SpcNode, b.SpcNode), cmp.Compare(a.DbNode, b.DbNode))
}

// DBDir is the list of databases, sorted.
type DBDir []Database

// ForkSet is a set of forks of a relation: bit f is fork f.
type ForkSet uint8

// validForks is every bit a ForkSet may have.
const validForks ForkSet = 1<<(pgdata.MaxFork+1) - 1

// Has reports whether f is in the set.
func (s ForkSet) Has(f pgdata.ForkNumber) bool { return f.Valid() && s&(1<<f) != 0 }

// RelEntry is one relation of a database and the forks it has.
type RelEntry struct {
	RelNode uint32
	Forks   ForkSet
}

// RelDir is the list of a database's relations, sorted by RelNode.
type RelDir []RelEntry

// SLRUDir is the sorted list of an SLRU's segment numbers.
type SLRUDir []uint32

// TwoPhaseDir is the sorted list of prepared transactions' xids.
type TwoPhaseDir []uint32

// encodeDir writes the common header and n entries of width bytes.
func encodeDir(magic byte, n, width int, put func(b []byte, i int)) []byte {
	b := make([]byte, dirHeaderSize+n*width)
	b[0], b[1] = magic, dirVersion
	binary.BigEndian.PutUint32(b[2:], uint32(n))
	for i := range n {
		put(b[dirHeaderSize+i*width:], i)
	}
	return b
}

// decodeDir checks the common header and the order of the entries and
// returns them.
func decodeDir(b []byte, magic byte, name string, width int) ([][]byte, error) {
	if len(b) < dirHeaderSize {
		return nil, fmt.Errorf("%w: %s: %d bytes, shorter than the header", ErrMalformedDir, name, len(b))
	}
	if b[0] != magic {
		return nil, fmt.Errorf("%w: %s: magic %#02x, want %#02x", ErrMalformedDir, name, b[0], magic)
	}
	if b[1] != dirVersion {
		return nil, fmt.Errorf("%w: %s: version %d, want %d", ErrMalformedDir, name, b[1], dirVersion)
	}
	n := uint64(binary.BigEndian.Uint32(b[2:]))
	if uint64(len(b)-dirHeaderSize) != n*uint64(width) {
		return nil, fmt.Errorf("%w: %s: %d entries need %d bytes, have %d", ErrMalformedDir, name, n, n*uint64(width), len(b)-dirHeaderSize)
	}
	entries := make([][]byte, n)
	for i := range entries {
		e := b[dirHeaderSize+i*width : dirHeaderSize+(i+1)*width]
		if i > 0 && string(entries[i-1]) >= string(e) {
			return nil, fmt.Errorf("%w: %s: entry %d is not after entry %d", ErrMalformedDir, name, i, i-1)
		}
		entries[i] = e
	}
	return entries, nil
}

// EncodeDBDir encodes d, which must be sorted without duplicates (as the
// DatadirWriter keeps it).
func EncodeDBDir(d DBDir) []byte {
	return encodeDir(dirMagicDB, len(d), 8, func(b []byte, i int) {
		binary.BigEndian.PutUint32(b, d[i].SpcNode)
		binary.BigEndian.PutUint32(b[4:], d[i].DbNode)
	})
}

// DecodeDBDir decodes a value written by EncodeDBDir.
func DecodeDBDir(b []byte) (DBDir, error) {
	es, err := decodeDir(b, dirMagicDB, "database directory", 8)
	if err != nil {
		return nil, err
	}
	d := make(DBDir, len(es))
	for i, e := range es {
		d[i] = Database{binary.BigEndian.Uint32(e), binary.BigEndian.Uint32(e[4:])}
	}
	return d, nil
}

// EncodeRelDir encodes d, which must be sorted without duplicates.
func EncodeRelDir(d RelDir) []byte {
	return encodeDir(dirMagicRel, len(d), 5, func(b []byte, i int) {
		binary.BigEndian.PutUint32(b, d[i].RelNode)
		b[4] = byte(d[i].Forks)
	})
}

// DecodeRelDir decodes a value written by EncodeRelDir. Relfilenode 0 (it
// names the database's own keys), an empty fork set and unknown forks are
// errors.
func DecodeRelDir(b []byte) (RelDir, error) {
	es, err := decodeDir(b, dirMagicRel, "relation directory", 5)
	if err != nil {
		return nil, err
	}
	d := make(RelDir, len(es))
	for i, e := range es {
		d[i] = RelEntry{binary.BigEndian.Uint32(e), ForkSet(e[4])}
		switch {
		case d[i].RelNode == 0:
			return nil, fmt.Errorf("%w: relation directory: entry %d has relfilenode 0", ErrMalformedDir, i)
		case d[i].Forks == 0 || d[i].Forks&^validForks != 0:
			return nil, fmt.Errorf("%w: relation directory: relation %d has fork set %#02x", ErrMalformedDir, d[i].RelNode, uint8(d[i].Forks))
		}
	}
	return d, nil
}

func encodeUint32s(magic byte, d []uint32) []byte {
	return encodeDir(magic, len(d), 4, func(b []byte, i int) { binary.BigEndian.PutUint32(b, d[i]) })
}

func decodeUint32s(b []byte, magic byte, name string) ([]uint32, error) {
	es, err := decodeDir(b, magic, name, 4)
	if err != nil {
		return nil, err
	}
	d := make([]uint32, len(es))
	for i, e := range es {
		d[i] = binary.BigEndian.Uint32(e)
	}
	return d, nil
}

// EncodeSLRUDir encodes d, which must be sorted without duplicates.
func EncodeSLRUDir(d SLRUDir) []byte { return encodeUint32s(dirMagicSLRU, d) }

// DecodeSLRUDir decodes a value written by EncodeSLRUDir.
func DecodeSLRUDir(b []byte) (SLRUDir, error) {
	return decodeUint32s(b, dirMagicSLRU, "SLRU segment directory")
}

// EncodeTwoPhaseDir encodes d, which must be sorted without duplicates.
func EncodeTwoPhaseDir(d TwoPhaseDir) []byte { return encodeUint32s(dirMagicTwoPhase, d) }

// DecodeTwoPhaseDir decodes a value written by EncodeTwoPhaseDir. Xid 0
// (InvalidTransactionId) is an error.
func DecodeTwoPhaseDir(b []byte) (TwoPhaseDir, error) {
	d, err := decodeUint32s(b, dirMagicTwoPhase, "two-phase directory")
	if err == nil && len(d) > 0 && d[0] == 0 {
		return nil, fmt.Errorf("%w: two-phase directory: xid 0", ErrMalformedDir)
	}
	return d, err
}

// insertSorted adds v to the sorted slice s unless an equal element is
// there; it reports whether s changed.
func insertSorted[T any](s *[]T, v T, compare func(a, b T) int) bool {
	i, found := slices.BinarySearchFunc(*s, v, compare)
	if found {
		return false
	}
	*s = slices.Insert(*s, i, v)
	return true
}

// removeSorted removes the element equal to v from the sorted slice s; it
// reports whether s changed.
func removeSorted[T any](s *[]T, v T, compare func(a, b T) int) bool {
	i, found := slices.BinarySearchFunc(*s, v, compare)
	if !found {
		return false
	}
	*s = slices.Delete(*s, i, i+1)
	return true
}
