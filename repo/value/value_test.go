package value

import (
	"bytes"
	"errors"
	"reflect"
	"testing"
)

func TestValueRoundTrip(t *testing.T) {
	tests := []Value{
		Image(bytes.Repeat([]byte{7}, 8192)),
		Image(nil),
		WALRecord([]byte("raw record"), false),
		WALRecord([]byte("init record"), true),
		OpValue(VMTruncate{HeapBlocks: 3}, false),
	}
	for _, v := range tests {
		got, err := Decode(v.Encode())
		if err != nil {
			t.Errorf("Decode(Encode(%v)): %v", v, err)
			continue
		}
		if got.Kind != v.Kind || got.WillInit != v.WillInit || !bytes.Equal(got.Data, v.Data) {
			t.Errorf("round trip: got %v, want %v", got, v)
		}
		if got.Initializes() != (v.Kind == KindImage || v.WillInit) {
			t.Errorf("%v.Initializes() = %v", got, got.Initializes())
		}
	}
}

func TestDecodeRejects(t *testing.T) {
	tests := []struct {
		name string
		in   []byte
	}{
		{"empty", nil},
		{"unknown kind", []byte{9, 1}},
		{"unknown flag", []byte{0x42}},
		{"image with will_init", []byte{0x81}},
		{"bad op", []byte{byte(KindOp), 99}},
		{"truncated op", []byte{byte(KindOp), byte(OpMultiXactOffset), 0, 0}},
		{"op with trailing bytes", append(OpValue(VMTruncate{1}, false).Encode(), 0)},
		{"huge count", []byte{byte(KindOp), byte(OpClogSetStatus), 1, 0xFF, 0xFF, 0xFF, 0xFF}},
	}
	for _, tt := range tests {
		if _, err := Decode(tt.in); !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: Decode(%x) error = %v, want ErrMalformed", tt.name, tt.in, err)
		}
	}
}

func TestOpRoundTrip(t *testing.T) {
	ops := []Op{
		ClogSetStatus{Status: 1, Xids: []uint32{100, 101, 4000}},
		MultiXactOffset{Multi: 7, Offset: 1234},
		MultiXactMembers{Offset: 9, Members: []MultiXactMember{{Xid: 5, Status: 2}, {Xid: 6, Status: 4}}},
		VMClear{HeapBlocks: []uint32{3, 32000}, Flags: 3},
		VMTruncate{HeapBlocks: 65000},
	}
	for _, op := range ops {
		v := OpValue(op, false)
		dv, err := Decode(v.Encode())
		if err != nil {
			t.Fatalf("Decode(%T): %v", op, err)
		}
		got, err := DecodeOp(dv.Data)
		if err != nil {
			t.Fatalf("DecodeOp(%T): %v", op, err)
		}
		if !reflect.DeepEqual(got, op) {
			t.Errorf("round trip: got %#v, want %#v", got, op)
		}
	}
}

func FuzzDecode(f *testing.F) {
	f.Add(Image([]byte("page")).Encode())
	f.Add(WALRecord([]byte("rec"), true).Encode())
	f.Add(OpValue(ClogSetStatus{Status: 2, Xids: []uint32{1}}, false).Encode())
	f.Add(OpValue(MultiXactMembers{Offset: 1, Members: []MultiXactMember{{1, 1}}}, false).Encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		v, err := Decode(b)
		if err != nil {
			return
		}
		if !bytes.Equal(v.Encode(), b) {
			t.Fatalf("Decode(%x) = %v, which encodes differently", b, v)
		}
	})
}

func TestSize(t *testing.T) {
	for _, n := range []uint32{0, 1, 131072, 0xFFFFFFFE} {
		v := Size(n)
		if v.Kind != KindImage {
			t.Errorf("Size(%d) is a %v, want an image", n, v.Kind)
		}
		got, err := DecodeSize(v.Data)
		if err != nil || got != n {
			t.Errorf("DecodeSize(Size(%d)) = %d, %v", n, got, err)
		}
	}
	if _, err := DecodeSize([]byte{1, 2, 3}); err == nil {
		t.Error("a 3-byte size was accepted")
	}
}
