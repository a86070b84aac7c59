package walingest

import "github.com/zenithdb/zenith/repo/pgdata"

// advanceCheckPoint changes cp as replaying d changes the server's
// counters and horizons (ShmemVariableCache, MultiXactState), so that a
// checkpoint written at the record's end (a basebackup's) sets them right:
//   - the next xid moves past every xid the WAL shows
//     (AdvanceNextFullTransactionIdPastXid at ApplyWalRecord, at
//     commit/abort/prepare for subtransactions, at multixact creation for
//     the members), and past what a running-transactions record says was
//     assigned;
//   - the next OID is what XLOG_NEXTOID says;
//   - the next multixact and member offset move past each multixact
//     created (MultiXactAdvanceNextMXact);
//   - the oldest xid and multixact and their databases follow CLOG and
//     multixact truncation, which vacuum logs when it moves them;
//   - checkpoint records replace the fields as xlog_redo does: a shutdown
//     checkpoint sets everything, an online one only moves the counters
//     and horizons forward.
func advanceCheckPoint(cp *pgdata.CheckPoint, d *decoded) {
	advanceXid := func(xid uint32) {
		if xid >= pgdata.FirstNormalTransactionID {
			cp.NextXid = pgdata.AdvanceNextXid(cp.NextXid, xid)
		}
	}
	advanceMulti := func(multi, offset uint32) {
		if pgdata.MultiXactIDPrecedes(cp.NextMulti, multi) {
			cp.NextMulti = multi
		}
		if pgdata.MultiXactOffsetPrecedes(cp.NextMultiOffset, offset) {
			cp.NextMultiOffset = offset
		}
	}
	advanceOldestMulti := func(multi, db uint32) {
		if pgdata.MultiXactIDPrecedes(cp.OldestMulti, multi) {
			cp.OldestMulti, cp.OldestMultiDB = multi, db
		}
	}
	advanceXid(d.rec.Header.Xid)
	switch {
	case d.checkpoint != nil && d.shutdown:
		*cp = *d.checkpoint
	case d.checkpoint != nil:
		c := d.checkpoint
		if cp.NextXid < c.NextXid {
			cp.NextXid = c.NextXid
		}
		advanceMulti(c.NextMulti, c.NextMultiOffset)
		advanceOldestMulti(c.OldestMulti, c.OldestMultiDB)
		if pgdata.XidPrecedes(cp.OldestXid, c.OldestXid) {
			cp.OldestXid, cp.OldestXidDB = c.OldestXid, c.OldestXidDB
		}
		// Not counters: where and when the checkpoint was.
		cp.Redo, cp.ThisTimeLineID, cp.PrevTimeLineID = c.Redo, c.ThisTimeLineID, c.PrevTimeLineID
		cp.FullPageWrites, cp.Time, cp.OldestActiveXid = c.FullPageWrites, c.Time, c.OldestActiveXid
		cp.OldestCommitTsXid, cp.NewestCommitTsXid = c.OldestCommitTsXid, c.NewestCommitTsXid
	case d.nextOID != nil:
		cp.NextOid = *d.nextOID
	case d.xactEnd != nil:
		for _, xid := range d.xactEnd.Xids() {
			advanceXid(xid)
		}
	case d.prepare != nil:
		advanceXid(d.prepare.Xid)
		for _, xid := range d.prepare.Subxacts {
			advanceXid(xid)
		}
	case d.assignment != nil:
		advanceXid(d.assignment.Top)
		for _, xid := range d.assignment.Subxacts {
			advanceXid(xid)
		}
	case d.multiCreate != nil:
		c := d.multiCreate
		advanceMulti(pgdata.NextMultiXactID(c.Multi), c.NextOffset())
		for _, m := range c.Members {
			advanceXid(m.Xid)
		}
	case d.clogTruncate != nil:
		if t := d.clogTruncate; pgdata.XidPrecedes(cp.OldestXid, t.OldestXact) {
			cp.OldestXid, cp.OldestXidDB = t.OldestXact, t.OldestXactDB
		}
	case d.multiTruncate != nil:
		// SetMultiXactIdLimit(endTruncOff, oldestMultiDB).
		cp.OldestMulti, cp.OldestMultiDB = d.multiTruncate.EndTruncOff, d.multiTruncate.OldestMultiDB
	case d.running != nil:
		if next := d.running.NextXid; next >= pgdata.FirstNormalTransactionID {
			advanceXid(next - 1)
		}
	}
}
