package pgdata

import (
	"encoding/binary"
	"fmt"
)

// XLogRelMapUpdate is the RelMap resource manager's only record type
// (XLOG_RELMAP_UPDATE, relmapper.h).
const XLogRelMapUpdate uint8 = 0x00

// RelMapFileSize is the size of a relation-map file (pg_filenode.map,
// sizeof(RelMapFile) in relmapper.c).
const RelMapFileSize = 512

// RelMapUpdate is a parsed XLOG_RELMAP_UPDATE record (xl_relmap_update):
// the whole new pg_filenode.map of database DbID in tablespace TsID, or
// of global/ when DbID is 0.
type RelMapUpdate struct {
	DbID, TsID uint32
	File       []byte // RelMapFileSize bytes, aliasing the record
}

// ParseRelMapUpdate parses an XLOG_RELMAP_UPDATE record.
func ParseRelMapUpdate(r *Record) (RelMapUpdate, error) {
	if r.Rmgr() != RmgrRelMap || r.RmgrInfo() != XLogRelMapUpdate {
		return RelMapUpdate{}, fmt.Errorf("record at %v (%v, info %#02x) is not a relation map update", r.LSN, r.Rmgr(), r.Header.Info)
	}
	d := r.MainData
	if len(d) < 12 {
		return RelMapUpdate{}, fmt.Errorf("relation map update at %v: main data is %d bytes, shorter than its header", r.LSN, len(d))
	}
	le := binary.LittleEndian
	u := RelMapUpdate{DbID: le.Uint32(d), TsID: le.Uint32(d[4:])}
	// relmap_redo refuses any other size too.
	if n := int32(le.Uint32(d[8:])); n != RelMapFileSize || len(d)-12 < RelMapFileSize {
		return RelMapUpdate{}, fmt.Errorf("relation map update at %v: %d bytes of map (%d in the record), want %d", r.LSN, n, len(d)-12, RelMapFileSize)
	}
	u.File = d[12 : 12+RelMapFileSize]
	return u, nil
}
