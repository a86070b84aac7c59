package datadir

import (
	"fmt"
	"strconv"
	"strings"

	"github.com/zenithdb/zenith/repo/pgdata"
)

// PGVersionFile is the contents of a PG_VERSION file (PG_MAJORVERSION and
// a newline).
var PGVersionFile = []byte(strconv.Itoa(pgdata.PGMajorVersion) + "\n")

// DatabaseDir is the directory of a database: global/, base/<oid>/ or, in
// any other tablespace, pg_tblspc/<spc>/PG_15_<catversion>/<oid>
// (GetDatabasePath).
func DatabaseDir(db Database) string {
	switch db.SpcNode {
	case pgdata.GlobalTablespaceOID:
		return "global"
	case pgdata.DefaultTablespaceOID:
		return "base/" + strconv.FormatUint(uint64(db.DbNode), 10)
	}
	return Tablespace{OID: db.SpcNode}.VersionDir() + "/" + strconv.FormatUint(uint64(db.DbNode), 10)
}

// DatabaseVersionPath is the path of the PG_VERSION file in a database's
// directory, an auxiliary file: listed where PostgreSQL writes one (the
// directory CREATE DATABASE makes in the database's default tablespace,
// CreateDirAndVersionFile, or copies, copydir), and nowhere else.
func DatabaseVersionPath(db Database) string { return DatabaseDir(db) + "/PG_VERSION" }

// ParseSLRUSegmentName parses an SLRU segment file name: the segment
// number in upper-case hexadecimal, at least 4 digits (SlruFileName's
// "%04X").
func ParseSLRUSegmentName(name string) (uint32, error) {
	if len(name) < 4 || len(name) > 8 || strings.Trim(name, "0123456789ABCDEF") != "" || (len(name) > 4 && name[0] == '0') {
		return 0, fmt.Errorf("%q is not an SLRU segment name", name)
	}
	n, err := strconv.ParseUint(name, 16, 32)
	if err != nil {
		return 0, fmt.Errorf("%q is not an SLRU segment name: %w", name, err)
	}
	return uint32(n), nil
}

// ParseTwoPhaseName parses a two-phase state file's name: the xid in 8
// upper-case hexadecimal digits (TwoPhaseFilePath's "%08X").
func ParseTwoPhaseName(name string) (uint32, error) {
	if len(name) != 8 || strings.Trim(name, "0123456789ABCDEF") != "" {
		return 0, fmt.Errorf("%q is not a two-phase state file name", name)
	}
	xid, err := strconv.ParseUint(name, 16, 32)
	if err != nil || xid == 0 {
		return 0, fmt.Errorf("%q is not a two-phase state file name", name)
	}
	return uint32(xid), nil
}
