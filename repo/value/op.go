package value

import (
	"encoding/binary"
	"fmt"
)

// Op is an operation that the page server applies to a page in Go instead
// of replaying a WAL record in PostgreSQL: the changes WAL records make to
// SLRU pages and to visibility-map bits without referencing the page. The
// concrete types are ClogSetStatus, MultiXactOffset, MultiXactMembers,
// VMClear and VMTruncate; the redo that applies them lives in walredo.
type Op interface {
	opCode() OpCode
	appendPayload(b []byte) []byte
}

// OpCode is the first byte of an encoded operation.
type OpCode uint8

// The operation codes.
const (
	OpClogSetStatus    OpCode = 1
	OpMultiXactOffset  OpCode = 2
	OpMultiXactMembers OpCode = 3
	OpVMClear          OpCode = 4
	OpVMTruncate       OpCode = 5
)

// ClogSetStatus sets the commit status of transactions whose status bits
// are on this CLOG page (clog.c: TransactionIdSetStatusBit). Status is a
// XidStatus: 1 committed, 2 aborted, 3 sub-committed.
type ClogSetStatus struct {
	Status uint8
	Xids   []uint32
}

// MultiXactOffset writes the offset of a multixact's first member into this
// page of pg_multixact/offsets (multixact.c: RecordNewMultiXact).
type MultiXactOffset struct {
	Multi  uint32
	Offset uint32
}

// MultiXactMember is one member of a multixact: a transaction and its lock
// mode (MultiXactStatus).
type MultiXactMember struct {
	Xid    uint32
	Status uint8
}

// MultiXactMembers writes members, starting at member offset Offset, into
// this page of pg_multixact/members.
type MultiXactMembers struct {
	Offset  uint32
	Members []MultiXactMember
}

// VMClear clears visibility-map bits (VISIBILITYMAP_ALL_VISIBLE = 1,
// ALL_FROZEN = 2) of heap blocks whose bits are on this map page, as heap
// insert, update, delete and lock records do without referencing the map.
type VMClear struct {
	HeapBlocks []uint32
	Flags      uint8
}

// VMTruncate clears, on this map page, the bits of every heap block at or
// after HeapBlocks, the heap's new size (visibilitymap_prepare_truncate).
type VMTruncate struct {
	HeapBlocks uint32
}

func (ClogSetStatus) opCode() OpCode    { return OpClogSetStatus }
func (MultiXactOffset) opCode() OpCode  { return OpMultiXactOffset }
func (MultiXactMembers) opCode() OpCode { return OpMultiXactMembers }
func (VMClear) opCode() OpCode          { return OpVMClear }
func (VMTruncate) opCode() OpCode       { return OpVMTruncate }

var be = binary.BigEndian

func (o ClogSetStatus) appendPayload(b []byte) []byte {
	b = append(b, o.Status)
	return appendU32s(b, o.Xids)
}

func (o MultiXactOffset) appendPayload(b []byte) []byte {
	return be.AppendUint32(be.AppendUint32(b, o.Multi), o.Offset)
}

func (o MultiXactMembers) appendPayload(b []byte) []byte {
	b = be.AppendUint32(b, o.Offset)
	b = be.AppendUint32(b, uint32(len(o.Members)))
	for _, m := range o.Members {
		b = append(be.AppendUint32(b, m.Xid), m.Status)
	}
	return b
}

func (o VMClear) appendPayload(b []byte) []byte {
	b = append(b, o.Flags)
	return appendU32s(b, o.HeapBlocks)
}

func (o VMTruncate) appendPayload(b []byte) []byte { return be.AppendUint32(b, o.HeapBlocks) }

func appendU32s(b []byte, vs []uint32) []byte {
	b = be.AppendUint32(b, uint32(len(vs)))
	for _, v := range vs {
		b = be.AppendUint32(b, v)
	}
	return b
}

// OpValue returns the value that stores op; willInit says whether the
// operation rebuilds the page from nothing.
func OpValue(op Op, willInit bool) Value {
	return Value{Kind: KindOp, WillInit: willInit, Data: op.appendPayload([]byte{byte(op.opCode())})}
}

// DecodeOp decodes the Data of a KindOp value.
func DecodeOp(data []byte) (Op, error) {
	if len(data) == 0 {
		return nil, fmt.Errorf("%w: empty operation", ErrMalformed)
	}
	d := decoder{b: data[1:]}
	var op Op
	switch code := OpCode(data[0]); code {
	case OpClogSetStatus:
		o := ClogSetStatus{Status: d.u8()}
		o.Xids = d.u32s()
		op = o
	case OpMultiXactOffset:
		op = MultiXactOffset{Multi: d.u32(), Offset: d.u32()}
	case OpMultiXactMembers:
		o := MultiXactMembers{Offset: d.u32()}
		n := d.count(5)
		for i := 0; i < n; i++ {
			o.Members = append(o.Members, MultiXactMember{Xid: d.u32(), Status: d.u8()})
		}
		op = o
	case OpVMClear:
		o := VMClear{Flags: d.u8()}
		o.HeapBlocks = d.u32s()
		op = o
	case OpVMTruncate:
		op = VMTruncate{HeapBlocks: d.u32()}
	default:
		return nil, fmt.Errorf("%w: unknown operation code %d", ErrMalformed, code)
	}
	if d.err != nil {
		return nil, fmt.Errorf("%w: operation %d: %v", ErrMalformed, data[0], d.err)
	}
	if len(d.b) != 0 {
		return nil, fmt.Errorf("%w: operation %d: %d trailing bytes", ErrMalformed, data[0], len(d.b))
	}
	return op, nil
}

// decoder reads big-endian fields, remembering the first error so callers
// check once at the end.
type decoder struct {
	b   []byte
	err error
}

func (d *decoder) take(n int) []byte {
	if d.err != nil {
		return nil
	}
	if len(d.b) < n {
		d.err = fmt.Errorf("truncated: need %d bytes, have %d", n, len(d.b))
		return nil
	}
	v := d.b[:n]
	d.b = d.b[n:]
	return v
}

func (d *decoder) u8() uint8 {
	if b := d.take(1); b != nil {
		return b[0]
	}
	return 0
}

func (d *decoder) u32() uint32 {
	if b := d.take(4); b != nil {
		return be.Uint32(b)
	}
	return 0
}

// count reads an element count and checks that that many elements of
// elemSize bytes can follow, so a corrupt count cannot make us allocate.
func (d *decoder) count(elemSize int) int {
	n := d.u32()
	if d.err == nil && uint64(n)*uint64(elemSize) > uint64(len(d.b)) {
		d.err = fmt.Errorf("count %d of %d-byte elements exceeds the %d bytes left", n, elemSize, len(d.b))
	}
	if d.err != nil {
		return 0
	}
	return int(n)
}

func (d *decoder) u32s() []uint32 {
	n := d.count(4)
	var vs []uint32
	for i := 0; i < n; i++ {
		vs = append(vs, d.u32())
	}
	return vs
}
