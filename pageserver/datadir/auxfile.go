package datadir

import (
	"encoding/binary"
	"fmt"
	"strings"
)

// Auxiliary files are small files of a data directory that are neither
// relations, SLRUs, two-phase state nor pg_control, and that a basebackup
// must reproduce (PG_VERSION files, the configuration files). Each is
// stored whole under key.AuxFile(path). That key is a hash of the path, so
// the value carries the path too (EncodeAuxFile), and the list of paths is
// kept, as a directory, under key.AuxFile(AuxDirPath).

// AuxDirPath is the reserved path whose key holds the list of auxiliary
// files. No file of a data directory has the empty path.
const AuxDirPath = ""

const (
	auxFileMagic   = 'F'
	auxFileVersion = 1
	maxAuxPathLen  = 1 << 10
)

// AuxDir is the sorted list of the auxiliary files' paths.
type AuxDir []string

// checkAuxPath rejects paths that could not have come from a data
// directory: empty, absolute, with "." or ".." elements, or too long.
func checkAuxPath(p string) error {
	if p == "" || len(p) > maxAuxPathLen || strings.HasPrefix(p, "/") || strings.ContainsRune(p, 0) {
		return fmt.Errorf("auxiliary file path %q is empty, absolute or too long", p)
	}
	for _, e := range strings.Split(p, "/") {
		if e == "" || e == "." || e == ".." {
			return fmt.Errorf("auxiliary file path %q has an empty, . or .. element", p)
		}
	}
	return nil
}

// EncodeAuxFile encodes an auxiliary file's value: magic 'F', version, the
// path's length (2 bytes, big-endian), the path, then the contents.
func EncodeAuxFile(path string, contents []byte) []byte {
	b := make([]byte, 0, 4+len(path)+len(contents))
	b = append(b, auxFileMagic, auxFileVersion)
	b = binary.BigEndian.AppendUint16(b, uint16(len(path)))
	return append(append(b, path...), contents...)
}

// DecodeAuxFile decodes a value written by EncodeAuxFile. The contents
// alias b.
func DecodeAuxFile(b []byte) (path string, contents []byte, err error) {
	if len(b) < 4 || b[0] != auxFileMagic || b[1] != auxFileVersion {
		return "", nil, fmt.Errorf("%w: auxiliary file: bad header", ErrMalformedDir)
	}
	n := int(binary.BigEndian.Uint16(b[2:]))
	if len(b) < 4+n {
		return "", nil, fmt.Errorf("%w: auxiliary file: path of %d bytes, have %d", ErrMalformedDir, n, len(b)-4)
	}
	path = string(b[4 : 4+n])
	if err := checkAuxPath(path); err != nil {
		return "", nil, fmt.Errorf("%w: %v", ErrMalformedDir, err)
	}
	return path, b[4+n:], nil
}

// EncodeAuxDir encodes d (sorted, without duplicates): magic 'A', version,
// the count (4 bytes), then each path as its length (2 bytes) and bytes.
func EncodeAuxDir(d AuxDir) []byte {
	b := []byte{dirMagicAux, dirVersion}
	b = binary.BigEndian.AppendUint32(b, uint32(len(d)))
	for _, p := range d {
		b = binary.BigEndian.AppendUint16(b, uint16(len(p)))
		b = append(b, p...)
	}
	return b
}

// DecodeAuxDir decodes a value written by EncodeAuxDir; paths out of order,
// duplicated or impossible in a data directory are errors.
func DecodeAuxDir(b []byte) (AuxDir, error) {
	if len(b) < dirHeaderSize || b[0] != dirMagicAux || b[1] != dirVersion {
		return nil, fmt.Errorf("%w: auxiliary file directory: bad header", ErrMalformedDir)
	}
	n := binary.BigEndian.Uint32(b[2:])
	rest := b[dirHeaderSize:]
	if uint64(n)*2 > uint64(len(rest)) {
		return nil, fmt.Errorf("%w: auxiliary file directory: %d entries in %d bytes", ErrMalformedDir, n, len(rest))
	}
	d := make(AuxDir, 0, n)
	for i := range n {
		if len(rest) < 2 {
			return nil, fmt.Errorf("%w: auxiliary file directory: entry %d truncated", ErrMalformedDir, i)
		}
		l := int(binary.BigEndian.Uint16(rest))
		if len(rest) < 2+l {
			return nil, fmt.Errorf("%w: auxiliary file directory: entry %d truncated", ErrMalformedDir, i)
		}
		p := string(rest[2 : 2+l])
		if err := checkAuxPath(p); err != nil {
			return nil, fmt.Errorf("%w: auxiliary file directory: %v", ErrMalformedDir, err)
		}
		if len(d) > 0 && d[len(d)-1] >= p {
			return nil, fmt.Errorf("%w: auxiliary file directory: entry %d is not after entry %d", ErrMalformedDir, i, i-1)
		}
		d = append(d, p)
		rest = rest[2+l:]
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: auxiliary file directory: %d bytes after the last entry", ErrMalformedDir, len(rest))
	}
	return d, nil
}
