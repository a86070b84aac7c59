package pgdata

import "testing"

func TestTypeOf(t *testing.T) {
	for _, tc := range []struct {
		rmid RmgrID
		info uint8
		want string // "" for no type
	}{
		{RmgrHeap, 0x00, "Heap/INSERT"},
		{RmgrHeap, 0x80, "Heap/INSERT+INIT"},
		{RmgrHeap, 0x0F, "Heap/INSERT"}, // XLR_INFO_MASK bits are not the type's
		{RmgrTransaction, 0x80 | 0x20, "Transaction/ABORT"},
		{RmgrGeneric, 0x10, "Generic/Generic"},
		{RmgrXLOG, 0xC0, ""}, // unused since PostgreSQL 12
		{RmgrXLOG, 0xD0, "XLOG/OVERWRITE_CONTRECORD"},
		{RmgrCommitTs, 0x20, ""},
		{RmgrID(128), 0x00, ""}, // custom
	} {
		got, ok := TypeOf(tc.rmid, tc.info)
		if (tc.want == "") == ok || ok && got.String() != tc.want {
			t.Errorf("TypeOf(%v, %#02x) = %v, %v; want %q", tc.rmid, tc.info, got, ok, tc.want)
		}
	}
}

func TestRecordTypesRoundTrip(t *testing.T) {
	ts := RecordTypes()
	if len(ts) < 100 {
		t.Fatalf("%d record types, PostgreSQL 15 has more than 100", len(ts))
	}
	seen := map[string]bool{}
	for _, rt := range ts {
		got, ok := TypeOf(rt.Rmgr, rt.Info)
		if !ok || got != rt {
			t.Errorf("TypeOf(%v, %#02x) = %v, %v; want itself", rt.Rmgr, rt.Info, got, ok)
		}
		if seen[rt.String()] {
			t.Errorf("%v listed twice", rt)
		}
		seen[rt.String()] = true
	}
}
