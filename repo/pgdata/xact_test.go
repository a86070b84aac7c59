package pgdata

import (
	"encoding/binary"
	"reflect"
	"strings"
	"testing"
)

// xactBytes builds little-endian record bytes from uint32s, uint64s,
// strings (written with their NUL) and byte slices.
func xactBytes(parts ...any) []byte {
	var b []byte
	for _, p := range parts {
		switch v := p.(type) {
		case uint32:
			b = binary.LittleEndian.AppendUint32(b, v)
		case int:
			b = binary.LittleEndian.AppendUint32(b, uint32(v))
		case uint64:
			b = binary.LittleEndian.AppendUint64(b, v)
		case string:
			b = append(append(b, v...), 0)
		case []byte:
			b = append(b, v...)
		default:
			panic("xactBytes: unsupported part")
		}
	}
	return b
}

func xactRecord(info uint8, xid uint32, data []byte) *Record {
	return &Record{LSN: 0x1000, Header: XLogRecordHeader{Rmid: RmgrTransaction, Info: info, Xid: xid}, MainData: data}
}

func TestParseXactEnd(t *testing.T) {
	rel := RelFileNode{SpcNode: 1663, DbNode: 5, RelNode: 16384}
	relBytes := xactBytes(rel.SpcNode, rel.DbNode, rel.RelNode)
	allParts := XactXinfoHasDBInfo | XactXinfoHasSubxacts | XactXinfoHasRelfilenodes |
		XactXinfoHasDroppedStats | XactXinfoHasInvals | XactXinfoHasOrigin
	tests := []struct {
		name string
		rec  *Record
		want XactEnd
	}{
		{
			name: "plain commit without xinfo",
			rec:  xactRecord(XLogXactCommit, 735, xactBytes(uint64(42))),
			want: XactEnd{Commit: true, Xid: 735, XactTime: 42},
		},
		{
			name: "commit with every part",
			rec: xactRecord(XLogXactCommit|XLogXactHasInfo, 800, xactBytes(uint64(7), allParts,
				uint32(5), uint32(1663), // dbinfo
				2, uint32(801), uint32(802), // subxacts
				1, relBytes, // relfilenodes
				1, make([]byte, 12), // dropped stats
				2, make([]byte, 32), // invalidation messages
				uint64(0xABCDEF), uint64(99))), // origin
			want: XactEnd{Commit: true, Xid: 800, XactTime: 7, Xinfo: allParts, DbID: 5, TsID: 1663,
				Subxacts: []uint32{801, 802}, Rels: []RelFileNode{rel}, OriginLSN: 0xABCDEF, OriginTime: 99},
		},
		{
			name: "abort of a subtransaction with its children",
			rec: xactRecord(XLogXactAbort|XLogXactHasInfo, 901, xactBytes(uint64(1), XactXinfoHasSubxacts,
				1, uint32(902))),
			want: XactEnd{Xid: 901, XactTime: 1, Xinfo: XactXinfoHasSubxacts, Subxacts: []uint32{902}},
		},
		{
			name: "commit prepared takes the two-phase xid",
			rec: xactRecord(XLogXactCommitPrepared|XLogXactHasInfo, 0, xactBytes(uint64(3),
				XactXinfoHasSubxacts|XactXinfoHasTwoPhase|XactXinfoHasGID,
				1, uint32(1001), uint32(1000), "gid-1")),
			want: XactEnd{Commit: true, Prepared: true, Xid: 1000, XactTime: 3,
				Xinfo: XactXinfoHasSubxacts | XactXinfoHasTwoPhase | XactXinfoHasGID, Subxacts: []uint32{1001}, GID: "gid-1"},
		},
		{
			name: "rollback prepared",
			rec: xactRecord(XLogXactAbortPrepared|XLogXactHasInfo, 0, xactBytes(uint64(4),
				XactXinfoHasTwoPhase, uint32(1100))),
			want: XactEnd{Prepared: true, Xid: 1100, XactTime: 4, Xinfo: XactXinfoHasTwoPhase},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseXactEnd(tt.rec)
			if err != nil {
				t.Fatalf("ParseXactEnd: %v", err)
			}
			if !reflect.DeepEqual(*got, tt.want) {
				t.Errorf("got %+v\nwant %+v", *got, tt.want)
			}
		})
	}
}

func TestXactEndStatusAndXids(t *testing.T) {
	c := XactEnd{Commit: true, Xid: 5, Subxacts: []uint32{6, 7}}
	if got := c.Status(); got != XidCommitted {
		t.Errorf("commit Status() = %v, want committed", got)
	}
	if got, want := c.Xids(), []uint32{5, 6, 7}; !reflect.DeepEqual(got, want) {
		t.Errorf("Xids() = %v, want %v", got, want)
	}
	if got := (&XactEnd{}).Status(); got != XidAborted {
		t.Errorf("abort Status() = %v, want aborted", got)
	}
}

func TestParseXactEndRejects(t *testing.T) {
	tests := []struct {
		name string
		rec  *Record
		want string
	}{
		{"short", xactRecord(XLogXactCommit, 1, []byte{1, 2}), "xact_time"},
		{"subxact count past the end", xactRecord(XLogXactCommit|XLogXactHasInfo, 1,
			xactBytes(uint64(1), XactXinfoHasSubxacts, 1000)), "subxacts"},
		{"negative count", xactRecord(XLogXactCommit|XLogXactHasInfo, 1,
			xactBytes(uint64(1), XactXinfoHasRelfilenodes, uint32(0xFFFFFFFF))), "relfilenodes"},
		{"gid without NUL", xactRecord(XLogXactCommitPrepared|XLogXactHasInfo, 0,
			append(xactBytes(uint64(1), XactXinfoHasTwoPhase|XactXinfoHasGID, uint32(9)), 'a', 'b')), "gid"},
		{"prepared without two-phase part", xactRecord(XLogXactCommitPrepared|XLogXactHasInfo, 0,
			xactBytes(uint64(1), uint32(0))), "TWOPHASE"},
		{"not an end", xactRecord(XLogXactAssignment, 1, nil), "not a commit or abort"},
		{"other rmgr", &Record{Header: XLogRecordHeader{Rmid: RmgrHeap}}, "not a transaction's end"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseXactEnd(tt.rec)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("ParseXactEnd error = %v, want one mentioning %q", err, tt.want)
			}
		})
	}
}

// prepareBytes builds an xl_xact_prepare and what follows, as
// twophase.c's StartPrepare/EndPrepare lay it out.
func prepareBytes(xid uint32, gid string, subxacts []uint32, commitRels, abortRels []RelFileNode, nInvals int) []byte {
	le := binary.LittleEndian
	h := make([]byte, xactPrepareHeaderLen)
	le.PutUint32(h[0:], twoPhaseMagic)
	le.PutUint32(h[8:], xid)
	le.PutUint32(h[12:], 5)
	le.PutUint64(h[16:], 1234)
	le.PutUint32(h[24:], 10)
	le.PutUint32(h[28:], uint32(len(subxacts)))
	le.PutUint32(h[32:], uint32(len(commitRels)))
	le.PutUint32(h[36:], uint32(len(abortRels)))
	le.PutUint32(h[48:], uint32(nInvals))
	le.PutUint16(h[54:], uint16(len(gid)+1))
	pad := func(b []byte) []byte { return append(b, make([]byte, maxAlign(len(b))-len(b))...) }
	b := append(h, pad(append([]byte(gid), 0))...)
	var x []byte
	for _, s := range subxacts {
		x = le.AppendUint32(x, s)
	}
	b = append(b, pad(x)...)
	for _, rels := range [][]RelFileNode{commitRels, abortRels} {
		var r []byte
		for _, rel := range rels {
			r = xactBytes(r, rel.SpcNode, rel.DbNode, rel.RelNode)
		}
		b = append(b, pad(r)...)
	}
	return append(b, make([]byte, 16*nInvals)...)
}

func TestParseXactPrepare(t *testing.T) {
	rel := RelFileNode{SpcNode: 1663, DbNode: 5, RelNode: 16390}
	data := prepareBytes(740, "tx-one", []uint32{741, 742, 743}, nil, []RelFileNode{rel}, 2)
	got, err := ParseXactPrepare(xactRecord(XLogXactPrepare, 740, data))
	if err != nil {
		t.Fatalf("ParseXactPrepare: %v", err)
	}
	want := XactPrepare{Xid: 740, Database: 5, PreparedAt: 1234, Owner: 10, Subxacts: []uint32{741, 742, 743},
		AbortRels: []RelFileNode{rel}, GID: "tx-one"}
	if !reflect.DeepEqual(*got, want) {
		t.Errorf("got %+v\nwant %+v", *got, want)
	}
	for _, cut := range []int{10, xactPrepareHeaderLen + 3, len(data) - 1} {
		if _, err := ParseXactPrepare(xactRecord(XLogXactPrepare, 740, data[:cut])); err == nil {
			t.Errorf("ParseXactPrepare of the first %d of %d bytes succeeded, want an error", cut, len(data))
		}
	}
	bad := append([]byte(nil), data...)
	bad[0] ^= 1
	if _, err := ParseXactPrepare(xactRecord(XLogXactPrepare, 740, bad)); err == nil || !strings.Contains(err.Error(), "magic") {
		t.Errorf("ParseXactPrepare with a bad magic: error = %v, want a magic error", err)
	}
}

func FuzzParseXact(f *testing.F) {
	f.Add(uint8(XLogXactCommit|XLogXactHasInfo), xactBytes(uint64(7), XactXinfoHasSubxacts, 1, uint32(5)))
	f.Add(uint8(XLogXactPrepare), prepareBytes(3, "g", []uint32{4}, nil, nil, 1))
	f.Fuzz(func(t *testing.T, info uint8, data []byte) {
		r := xactRecord(info, 1, data)
		if info&XLogXactOpMask == XLogXactPrepare {
			_, _ = ParseXactPrepare(r)
			return
		}
		if x, err := ParseXactEnd(r); err == nil && len(x.Subxacts)*4 > len(data) {
			t.Fatalf("%d subxacts from %d bytes", len(x.Subxacts), len(data))
		}
	})
}
