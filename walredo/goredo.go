package walredo

import (
	"fmt"

	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/value"
)

// ApplyOp applies a Go-applied operation to page, page number pageno of
// its SLRU (pg_xact, pg_multixact/offsets, pg_multixact/members) or of a
// visibility-map fork. An operation may name transactions, multixacts,
// members or heap blocks that live on other pages (the ingest stores one
// operation under every page it touches): only what lives on pageno is
// written, as PostgreSQL's redo writes it.
func ApplyOp(page []byte, pageno uint32, op value.Op) error {
	if len(page) != pgdata.BlockSize {
		return fmt.Errorf("apply %T: page is %d bytes, want %d", op, len(page), pgdata.BlockSize)
	}
	switch o := op.(type) {
	case value.ClogSetStatus:
		st := pgdata.XidStatus(o.Status)
		if st > pgdata.XidSubCommitted {
			return fmt.Errorf("apply CLOG status %d: not a transaction status", o.Status)
		}
		for _, xid := range o.Xids {
			if pgdata.ClogPage(xid) == pageno {
				pgdata.ClogSetStatus(page, xid, st)
			}
		}
	case value.MultiXactOffset:
		if pgdata.MultiXactOffsetPage(o.Multi) == pageno {
			pgdata.MultiXactSetOffset(page, o.Multi, o.Offset)
		}
	case value.MultiXactMembers:
		for i, m := range o.Members {
			if m.Status > uint8(pgdata.MultiXactUpdate) {
				return fmt.Errorf("apply multixact member at offset %d: lock mode %d", o.Offset+uint32(i), m.Status)
			}
			off := o.Offset + uint32(i) // member offsets wrap around at 2^32
			if pgdata.MultiXactMemberPage(off) == pageno {
				pgdata.MultiXactSetMember(page, off, pgdata.MultiXactMember{Xid: m.Xid, Status: pgdata.MultiXactStatus(m.Status)})
			}
		}
	case value.VMClear:
		for _, blk := range o.HeapBlocks {
			if pgdata.VMBlock(blk) == pageno {
				pgdata.VMClearBits(page, blk, o.Flags)
			}
		}
	case value.VMTruncate:
		pgdata.VMTruncatePage(page, pageno, o.HeapBlocks)
	default:
		return fmt.Errorf("apply operation %T: unknown to walredo", op)
	}
	return nil
}
