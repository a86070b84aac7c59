package walredo

import (
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/value"
)

// PageKind says which file a PageOp's page belongs to.
type PageKind uint8

// The pages Go-applied redo changes.
const (
	// PageClog is a page of pg_xact.
	PageClog PageKind = iota
	// PageMultiXactOffsets is a page of pg_multixact/offsets.
	PageMultiXactOffsets
	// PageMultiXactMembers is a page of pg_multixact/members.
	PageMultiXactMembers
	// PageVisibilityMap is a block of a relation's visibility-map fork.
	PageVisibilityMap
)

// PageOp is one page change a WAL record makes that redo applies in Go:
// Op applied to page Page (an SLRU page number, or a visibility-map block
// of Rel), or, with Zero, the page zeroed (a record that initializes an
// SLRU page: the page needs nothing older).
type PageOp struct {
	Kind PageKind
	Rel  pgdata.RelFileNode // for PageVisibilityMap
	Page uint32
	Zero bool
	Op   value.Op
}

// OpsForRecord returns the changes r makes that are not replayed through
// its block references: commit-log status bits of the transactions a
// commit or abort ends, zeroed SLRU pages, a multixact's offsets and
// members, and the visibility-map bits heap records clear and relation
// truncation cuts. One operation is returned per page it touches, holding
// only what lives on that page. Records of other kinds return nothing.
//
// Not covered, because they are about which pages exist rather than what
// is on them: CLOG and multixact truncation, and the visibility-map pages
// a truncation removes.
func OpsForRecord(r *pgdata.Record) ([]PageOp, error) {
	switch r.Rmgr() {
	case pgdata.RmgrTransaction:
		switch r.Header.Info & pgdata.XLogXactOpMask {
		case pgdata.XLogXactCommit, pgdata.XLogXactCommitPrepared, pgdata.XLogXactAbort, pgdata.XLogXactAbortPrepared:
			x, err := pgdata.ParseXactEnd(r)
			if err != nil {
				return nil, err
			}
			return clogOps(x.Xids(), x.Status()), nil
		}
	case pgdata.RmgrCLOG:
		if r.RmgrInfo() == pgdata.XLogClogZeroPage {
			page, err := pgdata.ParseSLRUZeroPage(r)
			if err != nil {
				return nil, err
			}
			return []PageOp{{Kind: PageClog, Page: page, Zero: true}}, nil
		}
	case pgdata.RmgrMultiXact:
		return multiXactOps(r)
	case pgdata.RmgrHeap, pgdata.RmgrHeap2:
		changes, err := pgdata.HeapVMChanges(r)
		if err != nil {
			return nil, err
		}
		var ops []PageOp
		for _, c := range changes {
			ops = append(ops, PageOp{Kind: PageVisibilityMap, Rel: c.Rel, Page: c.MapBlock(),
				Op: value.VMClear{HeapBlocks: []uint32{c.HeapBlock}, Flags: c.Bits}})
		}
		return ops, nil
	case pgdata.RmgrStorage:
		if r.RmgrInfo() == pgdata.XLogSmgrTruncate {
			t, err := pgdata.ParseSmgrTruncate(r)
			if err != nil {
				return nil, err
			}
			// Only a map page the new end cuts through keeps bits to clear
			// (visibilitymap_prepare_truncate); the pages after it go.
			if t.Flags&pgdata.SmgrTruncateVM != 0 && t.Blocks%pgdata.VMHeapBlocksPerPage != 0 {
				return []PageOp{{Kind: PageVisibilityMap, Rel: t.Rel, Page: pgdata.VMBlock(t.Blocks),
					Op: value.VMTruncate{HeapBlocks: t.Blocks}}}, nil
			}
		}
	}
	return nil, nil
}

// clogOps sets status for xids, one operation per CLOG page.
func clogOps(xids []uint32, status pgdata.XidStatus) []PageOp {
	var ops []PageOp
	byPage := map[uint32]int{}
	for _, xid := range xids {
		page := pgdata.ClogPage(xid)
		i, ok := byPage[page]
		if !ok {
			i = len(ops)
			byPage[page] = i
			ops = append(ops, PageOp{Kind: PageClog, Page: page, Op: value.ClogSetStatus{Status: uint8(status)}})
		}
		op := ops[i].Op.(value.ClogSetStatus)
		op.Xids = append(op.Xids, xid)
		ops[i].Op = op
	}
	return ops
}

// multiXactOps follows multixact_redo.
func multiXactOps(r *pgdata.Record) ([]PageOp, error) {
	switch r.RmgrInfo() {
	case pgdata.XLogMultiXactZeroOffPage, pgdata.XLogMultiXactZeroMemPage:
		page, err := pgdata.ParseSLRUZeroPage(r)
		if err != nil {
			return nil, err
		}
		kind := PageMultiXactOffsets
		if r.RmgrInfo() == pgdata.XLogMultiXactZeroMemPage {
			kind = PageMultiXactMembers
		}
		return []PageOp{{Kind: kind, Page: page, Zero: true}}, nil
	case pgdata.XLogMultiXactCreateID:
		c, err := pgdata.ParseMultiXactCreate(r)
		if err != nil {
			return nil, err
		}
		// RecordNewMultiXact writes the multixact's offset and (in the
		// minor releases zenith runs on) the next multixact's: where this
		// one's members end.
		next := pgdata.NextMultiXactID(c.Multi)
		ops := []PageOp{
			{Kind: PageMultiXactOffsets, Page: pgdata.MultiXactOffsetPage(c.Multi), Op: value.MultiXactOffset{Multi: c.Multi, Offset: c.Offset}},
			{Kind: PageMultiXactOffsets, Page: pgdata.MultiXactOffsetPage(next), Op: value.MultiXactOffset{Multi: next, Offset: c.NextOffset()}},
		}
		if len(c.Members) == 0 {
			return ops, nil
		}
		members := make([]value.MultiXactMember, len(c.Members))
		for i, m := range c.Members {
			members[i] = value.MultiXactMember{Xid: m.Xid, Status: uint8(m.Status)}
		}
		op := value.MultiXactMembers{Offset: c.Offset, Members: members}
		prev := uint32(0)
		for i := range c.Members {
			page := pgdata.MultiXactMemberPage(c.Offset + uint32(i))
			if i == 0 || page != prev {
				ops = append(ops, PageOp{Kind: PageMultiXactMembers, Page: page, Op: op})
				prev = page
			}
		}
		return ops, nil
	}
	return nil, nil
}
