package pgdata

// FirstNormalTransactionID is the first xid a transaction can get; 0-2
// are InvalidTransactionId, BootstrapTransactionId and
// FrozenTransactionId (transam.h).
const FirstNormalTransactionID = 3

// XidPrecedes reports whether xid a is older than b, modulo 2^32 for
// normal xids (TransactionIdPrecedes).
func XidPrecedes(a, b uint32) bool {
	if a < FirstNormalTransactionID || b < FirstNormalTransactionID {
		return a < b
	}
	return int32(a-b) < 0
}

// AdvanceNextXid returns the next full xid (epoch << 32 | xid) after
// seeing xid in WAL: next itself if xid is older than it, else the xid
// after xid, in the next epoch if xid has wrapped around
// (AdvanceNextFullTransactionIdPastXid).
func AdvanceNextXid(next uint64, xid uint32) uint64 {
	nextXid := uint32(next)
	if XidPrecedes(xid, nextXid) {
		return next
	}
	epoch := next >> 32
	xid++
	if xid < FirstNormalTransactionID {
		xid = FirstNormalTransactionID
	}
	if xid < nextXid {
		epoch++
	}
	return epoch<<32 | uint64(xid)
}

// MultiXactIDPrecedes reports whether multixact a is older than b, modulo
// 2^32 (MultiXactIdPrecedes).
func MultiXactIDPrecedes(a, b uint32) bool { return int32(a-b) < 0 }

// MultiXactOffsetPrecedes reports whether member offset a is before b,
// modulo 2^32 (MultiXactOffsetPrecedes).
func MultiXactOffsetPrecedes(a, b uint32) bool { return int32(a-b) < 0 }
