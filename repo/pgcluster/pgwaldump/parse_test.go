package pgwaldump

import (
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/zenithdb/zenith/repo/pgdata"
)

func rel(spc, db, r uint32) pgdata.RelFileNode {
	return pgdata.RelFileNode{SpcNode: spc, DbNode: db, RelNode: r}
}

func TestParse(t *testing.T) {
	tests := []struct {
		name string
		in   string
		want []Record
	}{
		{
			name: "short form with image",
			in:   "rmgr: Heap        len (rec/tot):     56/   573, tx:        724, lsn: 0/01511C30, prev 0/01511C00, desc: INSERT off 10 flags 0x01, blkref #0: rel 1663/5/1247 blk 14 FPW\n",
			want: []Record{{LSN: 0x1511C30, Prev: 0x1511C00, Rmgr: "Heap", Xid: 724, RecLen: 56, TotLen: 573,
				Desc:   "INSERT off 10 flags 0x01",
				Blocks: []Block{{ID: 0, Rel: rel(1663, 5, 1247), Fork: pgdata.ForkMain, Blk: 14, FPW: true}}}},
		},
		{
			name: "short form, two blocks, vm fork",
			in:   "rmgr: Heap2       len (rec/tot):     59/    59, tx:          0, lsn: 0/01501F60, prev 0/01501B18, desc: VISIBLE cutoff xid 676 flags 0x03, blkref #0: rel 1663/1/13391 fork vm blk 0, blkref #1: rel 1663/1/13391 blk 1\n",
			want: []Record{{LSN: 0x1501F60, Prev: 0x1501B18, Rmgr: "Heap2", RecLen: 59, TotLen: 59,
				Desc: "VISIBLE cutoff xid 676 flags 0x03",
				Blocks: []Block{
					{ID: 0, Rel: rel(1663, 1, 13391), Fork: pgdata.ForkVM, Blk: 0},
					{ID: 1, Rel: rel(1663, 1, 13391), Fork: pgdata.ForkMain, Blk: 1},
				}}},
		},
		{
			name: "image for WAL verification",
			in:   "rmgr: Heap        len (rec/tot):     76/   808, tx:        727, lsn: 0/015307D0, prev 0/015304B8, desc: HOT_UPDATE off 30 xmax 727 flags 0x20 ; new off 34 xmax 0, blkref #0: rel 1663/5/16384 blk 2 FPW for WAL verification\n",
			want: []Record{{LSN: 0x15307D0, Prev: 0x15304B8, Rmgr: "Heap", Xid: 727, RecLen: 76, TotLen: 808,
				Desc:   "HOT_UPDATE off 30 xmax 727 flags 0x20 ; new off 34 xmax 0",
				Blocks: []Block{{ID: 0, Rel: rel(1663, 5, 16384), Blk: 2, FPW: true, ForVerification: true}}}},
		},
		{
			name: "rmgr name longer than its column, trailing space, no blocks",
			in: "rmgr: LogicalMessage len (rec/tot):     63/    63, tx:          0, lsn: 0/0152FB18, prev 0/0152FAF0, desc: MESSAGE non-transactional, prefix \"zen\"; payload (9 bytes): 74 77\n" +
				"rmgr: Standby     len (rec/tot):     42/    42, tx:        727, lsn: 0/01530B48, prev 0/01530B18, desc: LOCK xid 727 db 5 rel 16391 \n",
			want: []Record{
				{LSN: 0x152FB18, Prev: 0x152FAF0, Rmgr: "LogicalMessage", RecLen: 63, TotLen: 63,
					Desc: `MESSAGE non-transactional, prefix "zen"; payload (9 bytes): 74 77`},
				{LSN: 0x1530B48, Prev: 0x1530B18, Rmgr: "Standby", Xid: 727, RecLen: 42, TotLen: 42, Desc: "LOCK xid 727 db 5 rel 16391"},
			},
		},
		{
			name: "detailed form with compressed image and a plain block",
			in: "rmgr: Heap2       len (rec/tot):     59/  3456, tx:        724, lsn: 0/01513870, prev 0/015129D0, desc: MULTI_INSERT 1 tuples flags 0x03\n" +
				"\tblkref #0: rel 1663/5/2608 fork main blk 3 (FPW); hole: offset: 668, length: 20, compression saved: 4775, method: lz4\n" +
				"\tblkref #1: rel 1663/5/2608 fork vm blk 0\n",
			want: []Record{{LSN: 0x1513870, Prev: 0x15129D0, Rmgr: "Heap2", Xid: 724, RecLen: 59, TotLen: 3456,
				Desc: "MULTI_INSERT 1 tuples flags 0x03",
				Blocks: []Block{
					{ID: 0, Rel: rel(1663, 5, 2608), Blk: 3, FPW: true, Detailed: true, HoleOffset: 668, HoleLength: 20, Compression: "lz4", CompressionSaved: 4775},
					{ID: 1, Rel: rel(1663, 5, 2608), Fork: pgdata.ForkVM, Blk: 0},
				}}},
		},
		{
			name: "detailed form, uncompressed image for verification",
			in: "rmgr: Btree       len (rec/tot):     55/  2884, tx:        724, lsn: 1/01511E70, prev 1/01511C30, desc: INSERT_LEAF off 246\n" +
				"\tblkref #0: rel 1663/5/2703 fork main blk 2 (FPW for WAL verification); hole: offset: 1008, length: 3232\n",
			want: []Record{{LSN: 0x1_01511E70, Prev: 0x1_01511C30, Rmgr: "Btree", Xid: 724, RecLen: 55, TotLen: 2884,
				Desc:   "INSERT_LEAF off 246",
				Blocks: []Block{{ID: 0, Rel: rel(1663, 5, 2703), Blk: 2, FPW: true, ForVerification: true, Detailed: true, HoleOffset: 1008, HoleLength: 3232}}}},
		},
		{
			name: "description spanning lines, 'prev:' spelling",
			in: "rmgr: LogicalMessage len (rec/tot):     63/    63, tx:          0, lsn: 0/0152FB18, prev: 0/0152FAF0, desc: MESSAGE prefix \"a\n" +
				"b\"\n" +
				"rmgr: XLOG        len (rec/tot):     30/    30, tx:        727, lsn: 0/01530AF8, prev 0/0152FB18, desc: NEXTOID 24583\n",
			want: []Record{
				{LSN: 0x152FB18, Prev: 0x152FAF0, Rmgr: "LogicalMessage", RecLen: 63, TotLen: 63, Desc: "MESSAGE prefix \"a\nb\""},
				{LSN: 0x1530AF8, Prev: 0x152FB18, Rmgr: "XLOG", Xid: 727, RecLen: 30, TotLen: 30, Desc: "NEXTOID 24583"},
			},
		},
		{
			name: "skip notice before the first record",
			in: "first record is after 0/1500000, at 0/1501B18, skipping over 6936 bytes\n" +
				"rmgr: XLOG        len (rec/tot):     30/    30, tx:        727, lsn: 0/01501B18, prev 0/014FFAC0, desc: NEXTOID 24583\n",
			want: []Record{{LSN: 0x1501B18, Prev: 0x14FFAC0, Rmgr: "XLOG", Xid: 727, RecLen: 30, TotLen: 30, Desc: "NEXTOID 24583"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := ParseAll(strings.NewReader(tt.in))
			if err != nil {
				t.Fatalf("ParseAll: %v", err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseFirstRecord(t *testing.T) {
	p := NewParser(strings.NewReader("first record is after 0/1500000, at 0/1501B18, skipping over 6936 bytes\n" +
		"rmgr: XLOG        len (rec/tot):     30/    30, tx:        727, lsn: 0/01501B18, prev 0/014FFAC0, desc: NEXTOID 24583\n"))
	if _, err := p.Next(); err != nil {
		t.Fatal(err)
	}
	if p.FirstRecord != 0x1501B18 {
		t.Errorf("FirstRecord = %v, want 0/1501B18", p.FirstRecord)
	}
}

func TestParseRejects(t *testing.T) {
	tests := []struct {
		name, in, errHas string
	}{
		{"garbage", "hello\n", `line 1: unexpected line "hello"`},
		{"block before record", "\tblkref #0: rel 1663/5/2703 fork main blk 2\n", "block reference before any record"},
		{"bad LSN", "rmgr: XLOG        len (rec/tot):     30/    30, tx:        727, lsn: 0/XYZ, prev 0/1, desc: NOOP\n", "not a pg_waldump record line"},
		{"length overflow", "rmgr: XLOG        len (rec/tot): 99999999999/    30, tx:        727, lsn: 0/1, prev 0/1, desc: NOOP\n", "out of range"},
		{"bad fork", "rmgr: XLOG        len (rec/tot):     30/    30, tx:        727, lsn: 0/1, prev 0/1, desc: NOOP\n\tblkref #0: rel 1663/5/2703 fork spoon blk 2\n", `unknown fork "spoon"`},
		{"block after blocks then text", "rmgr: XLOG        len (rec/tot):     30/    30, tx:        727, lsn: 0/1, prev 0/1, desc: NOOP\n\tblkref #0: rel 1663/5/2703 fork main blk 2\nstray\n", `line 3: unexpected line "stray"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := ParseAll(strings.NewReader(tt.in))
			if err == nil || !strings.Contains(err.Error(), tt.errHas) {
				t.Errorf("ParseAll(%q) error %v, want one saying %q", tt.in, err, tt.errHas)
			}
		})
	}
}

// TestShortAndDetailedAgree parses pg_waldump's two output forms of the
// same WAL (testdata, from a PostgreSQL 15 cluster run with
// wal_compression=lz4, then pglz) and checks they give the same records, and that the detailed form's
// image lengths add up to what the records say (tot - rec).
func TestShortAndDetailedAgree(t *testing.T) {
	parse := func(name string) []Record {
		f, err := os.Open("testdata/" + name)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		recs, err := ParseAll(f)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return recs
	}
	short, detailed := parse("short.txt"), parse("detailed.txt")
	if len(short) != 125 || len(detailed) != len(short) {
		t.Fatalf("got %d short and %d detailed records, want 125 of each", len(short), len(detailed))
	}
	var images int
	methods := map[string]int{}
	for i := range short {
		s, d := short[i], detailed[i]
		var imageLen int
		for j := range d.Blocks {
			imageLen += d.Blocks[j].ImageLen()
			if d.Blocks[j].FPW {
				images++
			}
			if d.Blocks[j].FPW {
				methods[d.Blocks[j].Compression]++
			}
			b := d.Blocks[j]
			b.Detailed, b.HoleOffset, b.HoleLength, b.Compression, b.CompressionSaved = false, 0, 0, "", 0
			d.Blocks[j] = b
		}
		if got := int(d.TotLen) - int(d.RecLen); got != imageLen {
			t.Errorf("record %v: tot-rec = %d, but its images are %d bytes", d.LSN, got, imageLen)
		}
		if !reflect.DeepEqual(s, d) {
			t.Errorf("record %d differs:\nshort    %+v\ndetailed %+v", i, s, d)
		}
	}
	if images == 0 || methods["lz4"] == 0 || methods["pglz"] == 0 || methods["lz4"]+methods["pglz"] != images {
		t.Errorf("%d images, compressed %v; want every image compressed with lz4 or pglz, both seen", images, methods)
	}
}
