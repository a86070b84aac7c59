package pgdata

import (
	"encoding/binary"
	"fmt"
)

// Record types of the MultiXact resource manager (multixact.h).
const (
	XLogMultiXactZeroOffPage uint8 = 0x00
	XLogMultiXactZeroMemPage uint8 = 0x10
	XLogMultiXactCreateID    uint8 = 0x20
	XLogMultiXactTruncateID  uint8 = 0x30
)

// Layout of pg_multixact (multixact.c). The offsets SLRU holds, per
// multixact, the 4-byte offset of its first member. The members SLRU holds
// members in groups of four: four flag bytes (the members' lock modes),
// then their four xids; a page holds whole groups only.
const (
	MultiXactOffsetsPerPage  = BlockSize / 4
	multiXactMembersPerGroup = 4
	multiXactGroupSize       = multiXactMembersPerGroup * (4 + 1)
	multiXactGroupsPerPage   = BlockSize / multiXactGroupSize
	MultiXactMembersPerPage  = multiXactGroupsPerPage * multiXactMembersPerGroup
	// FirstMultiXactID is the first valid multixact id; the counter skips
	// 0 when it wraps.
	FirstMultiXactID = 1
)

// MultiXactStatus is a member's lock mode (multixact.h).
type MultiXactStatus uint8

// The lock modes of multixact members.
const (
	MultiXactForKeyShare    MultiXactStatus = 0
	MultiXactForShare       MultiXactStatus = 1
	MultiXactForNoKeyUpdate MultiXactStatus = 2
	MultiXactForUpdate      MultiXactStatus = 3
	MultiXactNoKeyUpdate    MultiXactStatus = 4
	MultiXactUpdate         MultiXactStatus = 5
)

// MultiXactMember is one member of a multixact: a transaction and its lock
// mode.
type MultiXactMember struct {
	Xid    uint32
	Status MultiXactStatus
}

// MultiXactOffsetPage is the number of the offsets page holding multi's
// entry (MultiXactIdToOffsetPage).
func MultiXactOffsetPage(multi uint32) uint32 { return multi / MultiXactOffsetsPerPage }

// MultiXactMemberPage is the number of the members page holding the member
// at offset (MXOffsetToMemberPage).
func MultiXactMemberPage(offset uint32) uint32 { return offset / MultiXactMembersPerPage }

// NextMultiXactID is the multixact after multi, skipping 0 on wraparound.
func NextMultiXactID(multi uint32) uint32 {
	if multi+1 < FirstMultiXactID {
		return FirstMultiXactID
	}
	return multi + 1
}

// MultiXactSetOffset writes multi's member offset into page, the offsets
// page MultiXactOffsetPage(multi).
func MultiXactSetOffset(page []byte, multi, offset uint32) {
	binary.LittleEndian.PutUint32(page[4*(multi%MultiXactOffsetsPerPage):], offset)
}

// MultiXactOffset reads multi's member offset from page, the offsets page
// MultiXactOffsetPage(multi).
func MultiXactOffset(page []byte, multi uint32) uint32 {
	return binary.LittleEndian.Uint32(page[4*(multi%MultiXactOffsetsPerPage):])
}

// multiXactMemberPosition is where the member at offset keeps its flag
// byte and its xid within its page (MXOffsetToFlagsOffset,
// MXOffsetToFlagsBitShift, MXOffsetToMemberOffset).
func multiXactMemberPosition(offset uint32) (flagByte, xidPos int) {
	group := int(offset/multiXactMembersPerGroup) % multiXactGroupsPerPage
	inGroup := int(offset % multiXactMembersPerGroup)
	base := group * multiXactGroupSize
	return base + inGroup, base + multiXactMembersPerGroup + 4*inGroup
}

// MultiXactSetMember writes the member at offset into page, the members
// page MultiXactMemberPage(offset) (RecordNewMultiXact).
func MultiXactSetMember(page []byte, offset uint32, m MultiXactMember) {
	flag, pos := multiXactMemberPosition(offset)
	page[flag] = byte(m.Status)
	binary.LittleEndian.PutUint32(page[pos:], m.Xid)
}

// MultiXactGetMember reads the member at offset from page, the members page
// MultiXactMemberPage(offset).
func MultiXactGetMember(page []byte, offset uint32) MultiXactMember {
	flag, pos := multiXactMemberPosition(offset)
	return MultiXactMember{Xid: binary.LittleEndian.Uint32(page[pos:]), Status: MultiXactStatus(page[flag])}
}

// MultiXactCreate is a parsed XLOG_MULTIXACT_CREATE_ID record
// (xl_multixact_create): multixact Multi has the Members stored from
// member offset Offset on.
type MultiXactCreate struct {
	Multi   uint32
	Offset  uint32
	Members []MultiXactMember
}

// NextOffset is the member offset of the multixact after this one, which
// replay also writes into the offsets SLRU (RecordNewMultiXact); the
// offset 0 is skipped on wraparound.
func (c *MultiXactCreate) NextOffset() uint32 {
	next := c.Offset + uint32(len(c.Members))
	if next == 0 {
		return 1
	}
	return next
}

// The largest member count a valid record can carry: a record is at most
// 1020 MB (XLogRecordMaxSize) and a member takes 8 bytes in it.
const maxMultiXactMembers = (1020 << 20) / 8

// ParseMultiXactCreate parses an XLOG_MULTIXACT_CREATE_ID record.
func ParseMultiXactCreate(r *Record) (*MultiXactCreate, error) {
	if r.Rmgr() != RmgrMultiXact || r.RmgrInfo() != XLogMultiXactCreateID {
		return nil, fmt.Errorf("record at %v (%v, info %#02x) does not create a multixact", r.LSN, r.Rmgr(), r.Header.Info)
	}
	d := r.MainData
	if len(d) < 12 {
		return nil, fmt.Errorf("multixact creation at %v: main data is %d bytes, shorter than its 12-byte header", r.LSN, len(d))
	}
	le := binary.LittleEndian
	n := int32(le.Uint32(d[8:]))
	if n < 0 || n > maxMultiXactMembers || 12+8*int(n) > len(d) {
		return nil, fmt.Errorf("multixact creation at %v: %d members do not fit in %d bytes of main data", r.LSN, n, len(d))
	}
	c := &MultiXactCreate{Multi: le.Uint32(d), Offset: le.Uint32(d[4:]), Members: make([]MultiXactMember, n)}
	for i := range c.Members {
		m := d[12+8*i:]
		status := le.Uint32(m[4:])
		if status > uint32(MultiXactUpdate) {
			return nil, fmt.Errorf("multixact creation at %v: member %d has lock mode %d", r.LSN, i, status)
		}
		c.Members[i] = MultiXactMember{Xid: le.Uint32(m), Status: MultiXactStatus(status)}
	}
	return c, nil
}

// MultiXactTruncate is a parsed XLOG_MULTIXACT_TRUNCATE_ID record
// (xl_multixact_truncate): the offsets of multixacts [StartTruncOff,
// EndTruncOff) and the members [StartTruncMemb, EndTruncMemb) are removed.
type MultiXactTruncate struct {
	OldestMultiDB  uint32
	StartTruncOff  uint32
	EndTruncOff    uint32
	StartTruncMemb uint32
	EndTruncMemb   uint32
}

// ParseMultiXactTruncate parses an XLOG_MULTIXACT_TRUNCATE_ID record.
func ParseMultiXactTruncate(r *Record) (MultiXactTruncate, error) {
	if r.Rmgr() != RmgrMultiXact || r.RmgrInfo() != XLogMultiXactTruncateID {
		return MultiXactTruncate{}, fmt.Errorf("record at %v (%v, info %#02x) is not a multixact truncation", r.LSN, r.Rmgr(), r.Header.Info)
	}
	d := r.MainData
	if len(d) < 20 {
		return MultiXactTruncate{}, fmt.Errorf("multixact truncation at %v: main data is %d bytes, want 20", r.LSN, len(d))
	}
	le := binary.LittleEndian
	return MultiXactTruncate{
		OldestMultiDB:  le.Uint32(d),
		StartTruncOff:  le.Uint32(d[4:]),
		EndTruncOff:    le.Uint32(d[8:]),
		StartTruncMemb: le.Uint32(d[12:]),
		EndTruncMemb:   le.Uint32(d[16:]),
	}, nil
}
