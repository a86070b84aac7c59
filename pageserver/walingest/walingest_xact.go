package walingest

import (
	"bytes"
	"context"
	"encoding/binary"
	"hash/crc32"

	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// endTransaction does what a commit or abort does besides the CLOG bits
// (which come as operations): the relations it drops lose every fork
// (smgrdounlinkall at xact_redo_commit/abort), and a prepared
// transaction's state file goes (RemoveTwoPhaseFile).
func (w *WalIngest) endTransaction(ctx context.Context, x *pgdata.XactEnd) error {
	for _, rel := range x.Rels {
		for fork := range pgdata.MaxFork + 1 {
			if err := w.w.DropRelation(ctx, rel, fork); err != nil {
				return err
			}
		}
	}
	if x.Prepared {
		return w.w.RemoveTwoPhaseFile(ctx, x.Xid)
	}
	return nil
}

// castagnoli is PostgreSQL's CRC-32C.
var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// twoPhaseFile is the pg_twophase file of a prepared transaction whose
// PREPARE record has main data state: the state followed by its CRC-32C,
// as RecreateTwoPhaseFile writes it at a checkpoint.
func twoPhaseFile(state []byte) []byte {
	f := bytes.Clone(state)
	return binary.LittleEndian.AppendUint32(f, crc32.Checksum(state, castagnoli))
}

// truncateSLRU removes the segments of an SLRU that lie wholly before
// cutoff, a page number, as SimpleLruTruncate does (SlruMayDeleteSegment
// with the SLRU's wraparound-aware page order precedes).
func (w *WalIngest) truncateSLRU(ctx context.Context, s key.SLRU, cutoff uint32, precedes func(a, b uint32) bool) error {
	segs, err := w.w.SLRUSegments(ctx, s)
	if err != nil {
		return err
	}
	for _, seg := range segs {
		first := seg * pgdata.SLRUPagesPerSegment
		if precedes(first, cutoff) && precedes(first+pgdata.SLRUPagesPerSegment-1, cutoff) {
			if err := w.w.RemoveSLRUSegment(ctx, s, seg); err != nil {
				return err
			}
		}
	}
	return nil
}

// clogPagePrecedes orders CLOG pages by the xids on them (CLOGPagePrecedes).
func clogPagePrecedes(a, b uint32) bool {
	xa := a*pgdata.ClogXactsPerPage + pgdata.FirstNormalTransactionID + 1
	xb := b*pgdata.ClogXactsPerPage + pgdata.FirstNormalTransactionID + 1
	return pgdata.XidPrecedes(xa, xb) && pgdata.XidPrecedes(xa, xb+pgdata.ClogXactsPerPage-1)
}

// multiXactOffsetPagePrecedes orders multixact offset pages by the
// multixacts on them (MultiXactOffsetPagePrecedes).
func multiXactOffsetPagePrecedes(a, b uint32) bool {
	ma := a*pgdata.MultiXactOffsetsPerPage + pgdata.FirstMultiXactID + 1
	mb := b*pgdata.MultiXactOffsetsPerPage + pgdata.FirstMultiXactID + 1
	return pgdata.MultiXactIDPrecedes(ma, mb) && pgdata.MultiXactIDPrecedes(ma, mb+pgdata.MultiXactOffsetsPerPage-1)
}

// memberSegment is the members segment holding a member offset
// (MXOffsetToMemberSegment).
func memberSegment(offset uint32) uint32 {
	return pgdata.MultiXactMemberPage(offset) / pgdata.SLRUPagesPerSegment
}

// truncateMultiXacts follows multixact_redo for a truncation: the members
// segments from the old oldest member to the new one's segment (excluded,
// wrapping around: PerformMembersTruncation) and the offsets segments
// before the new oldest multixact's (PerformOffsetsTruncation) go.
func (w *WalIngest) truncateMultiXacts(ctx context.Context, t *pgdata.MultiXactTruncate) error {
	last := memberSegment(^uint32(0))
	end := memberSegment(t.EndTruncMemb)
	for seg := memberSegment(t.StartTruncMemb); seg != end; {
		if err := w.w.RemoveSLRUSegment(ctx, key.MultiXactMembers, seg); err != nil {
			return err
		}
		if seg == last {
			seg = 0
		} else {
			seg++
		}
	}
	prev := t.EndTruncOff - 1 // PreviousMultiXactId
	if t.EndTruncOff == pgdata.FirstMultiXactID {
		prev = ^uint32(0)
	}
	return w.truncateSLRU(ctx, key.MultiXactOffsets, pgdata.MultiXactOffsetPage(prev), multiXactOffsetPagePrecedes)
}
