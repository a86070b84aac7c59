package pgdata

import (
	"encoding/binary"
	"reflect"
	"testing"
)

func TestMultiXactOffsetLayout(t *testing.T) {
	tests := []struct {
		multi uint32
		page  uint32
		at    int
	}{
		{1, 0, 4},
		{2047, 0, 8188},
		{2048, 1, 0},
		{2049, 1, 4},
		{0xFFFFFFFF, 2097151, 8188},
	}
	for _, tt := range tests {
		if got := MultiXactOffsetPage(tt.multi); got != tt.page {
			t.Errorf("MultiXactOffsetPage(%d) = %d, want %d", tt.multi, got, tt.page)
		}
		page := make([]byte, BlockSize)
		MultiXactSetOffset(page, tt.multi, 0xA1B2C3D4)
		if got := binary.LittleEndian.Uint32(page[tt.at:]); got != 0xA1B2C3D4 {
			t.Errorf("multi %d: bytes at %d = %#x, want the offset there", tt.multi, tt.at, got)
		}
		if got := MultiXactOffset(page, tt.multi); got != 0xA1B2C3D4 {
			t.Errorf("MultiXactOffset(%d) = %#x", tt.multi, got)
		}
	}
}

func TestMultiXactMemberLayout(t *testing.T) {
	if MultiXactMembersPerPage != 1636 {
		t.Fatalf("MultiXactMembersPerPage = %d, want 1636 (409 groups of 4)", MultiXactMembersPerPage)
	}
	tests := []struct {
		offset      uint32
		page        uint32
		flag, xidAt int
	}{
		{0, 0, 0, 4},
		{5, 0, 21, 28},
		{1635, 0, 8160 + 3, 8160 + 4 + 12},
		{1636, 1, 0, 4},
	}
	for _, tt := range tests {
		if got := MultiXactMemberPage(tt.offset); got != tt.page {
			t.Errorf("MultiXactMemberPage(%d) = %d, want %d", tt.offset, got, tt.page)
		}
		page := make([]byte, BlockSize)
		m := MultiXactMember{Xid: 0x01020304, Status: MultiXactNoKeyUpdate}
		MultiXactSetMember(page, tt.offset, m)
		if page[tt.flag] != byte(MultiXactNoKeyUpdate) || binary.LittleEndian.Uint32(page[tt.xidAt:]) != m.Xid {
			t.Errorf("offset %d: flag byte %d = %d, xid at %d = %#x; want %d and %#x",
				tt.offset, tt.flag, page[tt.flag], tt.xidAt, binary.LittleEndian.Uint32(page[tt.xidAt:]), m.Status, m.Xid)
		}
		if got := MultiXactGetMember(page, tt.offset); got != m {
			t.Errorf("MultiXactGetMember(%d) = %+v, want %+v", tt.offset, got, m)
		}
	}
}

func TestNextMultiXact(t *testing.T) {
	if got := NextMultiXactID(0xFFFFFFFF); got != FirstMultiXactID {
		t.Errorf("NextMultiXactID(max) = %d, want %d", got, FirstMultiXactID)
	}
	c := MultiXactCreate{Multi: 3, Offset: 0xFFFFFFFE, Members: make([]MultiXactMember, 2)}
	if got := c.NextOffset(); got != 1 {
		t.Errorf("NextOffset wrapping to 0 = %d, want 1", got)
	}
}

func TestParseMultiXactCreate(t *testing.T) {
	le := binary.LittleEndian
	data := le.AppendUint32(le.AppendUint32(le.AppendUint32(nil, 12), 34), 2)
	data = le.AppendUint32(le.AppendUint32(data, 900), uint32(MultiXactForKeyShare))
	data = le.AppendUint32(le.AppendUint32(data, 901), uint32(MultiXactUpdate))
	rec := &Record{Header: XLogRecordHeader{Rmid: RmgrMultiXact, Info: XLogMultiXactCreateID}, MainData: data}
	got, err := ParseMultiXactCreate(rec)
	if err != nil {
		t.Fatal(err)
	}
	want := &MultiXactCreate{Multi: 12, Offset: 34, Members: []MultiXactMember{{900, MultiXactForKeyShare}, {901, MultiXactUpdate}}}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got %+v, want %+v", got, want)
	}
	for _, bad := range [][]byte{data[:20], le.AppendUint32(append([]byte(nil), data[:8]...), 0xFFFFFFFF)} {
		rec.MainData = bad
		if _, err := ParseMultiXactCreate(rec); err == nil {
			t.Errorf("ParseMultiXactCreate(% x) succeeded, want an error", bad)
		}
	}
	badStatus := append([]byte(nil), data...)
	le.PutUint32(badStatus[16:], 9)
	rec.MainData = badStatus
	if _, err := ParseMultiXactCreate(rec); err == nil {
		t.Error("ParseMultiXactCreate with lock mode 9 succeeded, want an error")
	}
}

func TestParseMultiXactTruncate(t *testing.T) {
	le := binary.LittleEndian
	var data []byte
	for _, v := range []uint32{5, 1, 4096, 0, 8000} {
		data = le.AppendUint32(data, v)
	}
	rec := &Record{Header: XLogRecordHeader{Rmid: RmgrMultiXact, Info: XLogMultiXactTruncateID}, MainData: data}
	got, err := ParseMultiXactTruncate(rec)
	want := MultiXactTruncate{OldestMultiDB: 5, StartTruncOff: 1, EndTruncOff: 4096, StartTruncMemb: 0, EndTruncMemb: 8000}
	if err != nil || got != want {
		t.Errorf("ParseMultiXactTruncate = %+v, %v; want %+v", got, err, want)
	}
}

func FuzzParseMultiXactCreate(f *testing.F) {
	le := binary.LittleEndian
	f.Add(le.AppendUint32(le.AppendUint32(le.AppendUint32(le.AppendUint32(le.AppendUint32(nil, 1), 1), 1), 5), 0))
	f.Fuzz(func(t *testing.T, data []byte) {
		c, err := ParseMultiXactCreate(&Record{Header: XLogRecordHeader{Rmid: RmgrMultiXact, Info: XLogMultiXactCreateID}, MainData: data})
		if err == nil && 12+8*len(c.Members) > len(data) {
			t.Fatalf("%d members from %d bytes", len(c.Members), len(data))
		}
	})
}
