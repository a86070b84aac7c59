package pgdata

import (
	"encoding/binary"
	"fmt"
)

// SmgrCreate is a parsed XLOG_SMGR_CREATE record (xl_smgr_create): fork
// Fork of relation Rel is created (smgrcreate), empty.
type SmgrCreate struct {
	Rel  RelFileNode
	Fork ForkNumber
}

// ParseSmgrCreate parses an XLOG_SMGR_CREATE record.
func ParseSmgrCreate(r *Record) (SmgrCreate, error) {
	if r.Rmgr() != RmgrStorage || r.RmgrInfo() != XLogSmgrCreate {
		return SmgrCreate{}, fmt.Errorf("record at %v (%v, info %#02x) is not a relation creation", r.LSN, r.Rmgr(), r.Header.Info)
	}
	d := r.MainData
	if len(d) < 16 {
		return SmgrCreate{}, fmt.Errorf("relation creation at %v: main data is %d bytes, want 16", r.LSN, len(d))
	}
	fork := int32(binary.LittleEndian.Uint32(d[12:])) // ForkNumber is an int-sized enum
	if fork < 0 || !ForkNumber(fork).Valid() {
		return SmgrCreate{}, fmt.Errorf("relation creation at %v: fork number %d", r.LSN, fork)
	}
	c := SmgrCreate{Rel: parseRelFileNode(d), Fork: ForkNumber(fork)}
	if c.Rel.RelNode == 0 {
		return SmgrCreate{}, fmt.Errorf("relation creation at %v: relfilenode 0", r.LSN)
	}
	return c, nil
}
