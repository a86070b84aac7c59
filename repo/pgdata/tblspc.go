package pgdata

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"unicode/utf8"
)

// Record types of the Tablespace resource manager (commands/tablespace.h).
const (
	XLogTblspcCreate uint8 = 0x00
	XLogTblspcDrop   uint8 = 0x10
)

// MaxTablespaceLocation bounds the location a tablespace record may carry:
// CreateTableSpace refuses a location whose files' paths would not fit in
// MAXPGPATH (1024) bytes, so anything longer is not PostgreSQL's.
const MaxTablespaceLocation = 1024

// TblspcCreate is a parsed XLOG_TBLSPC_CREATE record
// (xl_tblspc_create_rec): tablespace TsID made at Location, the absolute
// directory CREATE TABLESPACE ... LOCATION named. An empty Location is an
// in-place tablespace (allow_in_place_tablespaces): its directory is
// pg_tblspc/<TsID> itself, not a symbolic link.
type TblspcCreate struct {
	TsID     uint32
	Location string
}

// InPlace reports whether the tablespace lives inside the data directory.
func (c TblspcCreate) InPlace() bool { return c.Location == "" }

// ParseTblspcCreate parses an XLOG_TBLSPC_CREATE record: the OID, then the
// location as a NUL-terminated string (CreateTableSpace registers
// strlen(location) + 1 bytes).
func ParseTblspcCreate(r *Record) (TblspcCreate, error) {
	if r.Rmgr() != RmgrTablespace || r.RmgrInfo() != XLogTblspcCreate {
		return TblspcCreate{}, fmt.Errorf("record at %v (%v, info %#02x) is not a tablespace creation", r.LSN, r.Rmgr(), r.Header.Info)
	}
	d := r.MainData
	if len(d) < 5 {
		return TblspcCreate{}, fmt.Errorf("tablespace creation at %v: main data is %d bytes, want an OID and a location", r.LSN, len(d))
	}
	c := TblspcCreate{TsID: binary.LittleEndian.Uint32(d)}
	loc, _, ok := bytes.Cut(d[4:], []byte{0})
	switch {
	case !ok:
		return TblspcCreate{}, fmt.Errorf("tablespace creation at %v: location is not NUL-terminated", r.LSN)
	case c.TsID == 0 || c.TsID == DefaultTablespaceOID || c.TsID == GlobalTablespaceOID:
		return TblspcCreate{}, fmt.Errorf("tablespace creation at %v: tablespace OID %d", r.LSN, c.TsID)
	case len(loc) > MaxTablespaceLocation || !utf8.Valid(loc):
		return TblspcCreate{}, fmt.Errorf("tablespace creation at %v: location of %d bytes is too long or not UTF-8", r.LSN, len(loc))
	case len(loc) > 0 && loc[0] != '/':
		// CreateTableSpace: "tablespace location must be an absolute path".
		return TblspcCreate{}, fmt.Errorf("tablespace creation at %v: location %q is not an absolute path", r.LSN, loc)
	}
	c.Location = string(loc)
	return c, nil
}

// ParseTblspcDrop parses an XLOG_TBLSPC_DROP record (xl_tblspc_drop_rec)
// and returns the dropped tablespace's OID.
func ParseTblspcDrop(r *Record) (uint32, error) {
	if r.Rmgr() != RmgrTablespace || r.RmgrInfo() != XLogTblspcDrop {
		return 0, fmt.Errorf("record at %v (%v, info %#02x) is not a tablespace drop", r.LSN, r.Rmgr(), r.Header.Info)
	}
	if len(r.MainData) < 4 {
		return 0, fmt.Errorf("tablespace drop at %v: main data is %d bytes, want 4", r.LSN, len(r.MainData))
	}
	ts := binary.LittleEndian.Uint32(r.MainData)
	if ts == 0 || ts == DefaultTablespaceOID || ts == GlobalTablespaceOID {
		return 0, fmt.Errorf("tablespace drop at %v: tablespace OID %d", r.LSN, ts)
	}
	return ts, nil
}
