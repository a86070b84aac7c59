package pgdata

import "fmt"

// XactAssignment is a parsed XLOG_XACT_ASSIGNMENT record
// (xl_xact_assignment): subtransaction xids assigned under Top.
type XactAssignment struct {
	Top      uint32
	Subxacts []uint32
}

// ParseXactAssignment parses an XLOG_XACT_ASSIGNMENT record.
func ParseXactAssignment(r *Record) (XactAssignment, error) {
	if r.Rmgr() != RmgrTransaction || r.Header.Info&XLogXactOpMask != XLogXactAssignment {
		return XactAssignment{}, fmt.Errorf("record at %v (%v, info %#02x) is not a subtransaction assignment", r.LSN, r.Rmgr(), r.Header.Info)
	}
	d := xactReader{b: r.MainData}
	a := XactAssignment{Top: d.u32("xtop")}
	a.Subxacts = d.xids("xsub")
	if d.err != nil {
		return XactAssignment{}, fmt.Errorf("subtransaction assignment at %v: %w", r.LSN, d.err)
	}
	return a, nil
}
