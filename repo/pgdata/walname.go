package pgdata

import (
	"fmt"
	"strconv"
	"strings"
)

// WALFileNameLen is the length of a WAL segment file name (XLOG_FNAME_LEN).
const WALFileNameLen = 24

// PartialWALSuffix marks a segment that was not complete when it was
// saved (IsPartialXLogFileName), as pg_receivewal and archive recovery
// leave them.
const PartialWALSuffix = ".partial"

// TablespaceVersionDirectory is the directory PostgreSQL 15 creates inside
// every tablespace other than pg_default and pg_global
// (TABLESPACE_VERSION_DIRECTORY: "PG_" major "_" CATALOG_VERSION_NO).
const TablespaceVersionDirectory = "PG_15_202209061"

// WALFileName is the name of the file that holds WAL segment segNo on
// timeline tli (XLogFileName): three groups of eight upper-case hex digits.
func WALFileName(tli uint32, segNo uint64, segSize uint64) string {
	perID := segmentsPerXLogID(segSize)
	return fmt.Sprintf("%08X%08X%08X", tli, uint32(segNo/perID), uint32(segNo%perID))
}

// segmentsPerXLogID is XLogSegmentsPerXLogId: how many segments one
// "xlogid" (the high 32 bits of an LSN) spans.
func segmentsPerXLogID(segSize uint64) uint64 {
	if segSize == 0 {
		segSize = WALSegmentSize
	}
	return (1 << 32) / segSize
}

// ParseWALFileName parses a WAL segment file name made by WALFileName,
// optionally with the ".partial" suffix, into its timeline and segment
// number for segments of segSize bytes (XLogFromFileName). Any other name
// is an error.
func ParseWALFileName(name string, segSize uint64) (tli uint32, segNo uint64, partial bool, err error) {
	tli, log, seg, partial, err := splitWALFileName(name)
	if err != nil {
		return 0, 0, false, err
	}
	segNo, err = walSegNo(name, log, seg, segSize)
	if err != nil {
		return 0, 0, false, err
	}
	return tli, segNo, partial, nil
}

// splitWALFileName checks the form of a WAL segment file name and splits
// it into its three numbers: timeline, "log" and "seg".
func splitWALFileName(name string) (tli, log, seg uint32, partial bool, err error) {
	base, partial := strings.CutSuffix(name, PartialWALSuffix)
	if len(base) != WALFileNameLen || strings.Trim(base, "0123456789ABCDEF") != "" {
		return 0, 0, 0, false, fmt.Errorf("%q is not a WAL segment file name (24 upper-case hexadecimal digits, e.g. 000000010000000000000001)", name)
	}
	part := func(i int) uint32 {
		v, _ := strconv.ParseUint(base[i:i+8], 16, 32)
		return uint32(v)
	}
	return part(0), part(8), part(16), partial, nil
}

// walSegNo is the segment number that a file name's "log" and "seg" parts
// give for segments of segSize bytes.
func walSegNo(name string, log, seg uint32, segSize uint64) (uint64, error) {
	perID := segmentsPerXLogID(segSize)
	if uint64(seg) >= perID {
		return 0, fmt.Errorf("WAL segment file name %q: segment part %08X is out of range for %d-byte segments", name, seg, segSize)
	}
	return uint64(log)*perID + uint64(seg), nil
}

// RelationPath is the path, relative to the data directory, of segment
// segNo (each RELSEG_SIZE blocks, 1 GiB) of a fork of a relation, as
// GetRelationPath builds it: "base/5/16384", "base/5/16384_vm.1",
// "global/1262", "pg_tblspc/16400/PG_15_202209061/5/16384_fsm".
func RelationPath(rel RelFileNode, fork ForkNumber, segNo uint32) string {
	var p string
	switch rel.SpcNode {
	case GlobalTablespaceOID:
		p = fmt.Sprintf("global/%d", rel.RelNode)
	case DefaultTablespaceOID:
		p = fmt.Sprintf("base/%d/%d", rel.DbNode, rel.RelNode)
	default:
		p = fmt.Sprintf("pg_tblspc/%d/%s/%d/%d", rel.SpcNode, TablespaceVersionDirectory, rel.DbNode, rel.RelNode)
	}
	if fork != ForkMain {
		p += "_" + fork.String()
	}
	if segNo > 0 {
		p += "." + strconv.FormatUint(uint64(segNo), 10)
	}
	return p
}

// ParseRelationPath is the inverse of RelationPath: it recognises the
// file of a permanent relation (temporary relations' "t<backend>_" files
// are not WAL-logged and are rejected) and returns its relation, fork and
// segment number.
func ParseRelationPath(path string) (rel RelFileNode, fork ForkNumber, segNo uint32, err error) {
	bad := func(why string) (RelFileNode, ForkNumber, uint32, error) {
		return RelFileNode{}, 0, 0, fmt.Errorf("%q is not a relation file path: %s", path, why)
	}
	parts := strings.Split(path, "/")
	var file string
	switch {
	case len(parts) == 2 && parts[0] == "global":
		rel.SpcNode = GlobalTablespaceOID
		file = parts[1]
	case len(parts) == 3 && parts[0] == "base":
		rel.SpcNode = DefaultTablespaceOID
		db, err := parseOID(parts[1])
		if err != nil {
			return bad("database: " + err.Error())
		}
		rel.DbNode = db
		file = parts[2]
	case len(parts) == 5 && parts[0] == "pg_tblspc":
		spc, err := parseOID(parts[1])
		if err != nil {
			return bad("tablespace: " + err.Error())
		}
		if parts[2] != TablespaceVersionDirectory {
			return bad("tablespace directory " + parts[2] + " is not " + TablespaceVersionDirectory)
		}
		db, err := parseOID(parts[3])
		if err != nil {
			return bad("database: " + err.Error())
		}
		rel.SpcNode, rel.DbNode = spc, db
		file = parts[4]
	default:
		return bad("want global/REL, base/DB/REL or pg_tblspc/SPC/" + TablespaceVersionDirectory + "/DB/REL")
	}
	if name, seg, ok := strings.Cut(file, "."); ok {
		n, err := parseOID(seg)
		if err != nil || n == 0 {
			return bad("segment number " + strconv.Quote(seg))
		}
		segNo, file = n, name
	}
	if name, forkName, ok := strings.Cut(file, "_"); ok {
		f, err := ParseFork(forkName)
		if err != nil || f == ForkMain {
			return bad("fork " + strconv.Quote(forkName))
		}
		fork, file = f, name
	}
	relNode, err := parseOID(file)
	if err != nil {
		return bad("relfilenode: " + err.Error())
	}
	rel.RelNode = relNode
	return rel, fork, segNo, nil
}

// parseOID parses a decimal OID as PostgreSQL prints it: no sign, no
// leading zeros.
func parseOID(s string) (uint32, error) {
	if s == "" || (len(s) > 1 && s[0] == '0') || strings.Trim(s, "0123456789") != "" {
		return 0, fmt.Errorf("%q is not a decimal OID", s)
	}
	v, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not a decimal OID", s)
	}
	return uint32(v), nil
}
