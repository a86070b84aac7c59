package walingest

import (
	"bytes"
	"strings"
	"testing"

	"github.com/zenithdb/zenith/repo/pgdata"
)

// TestPageImageGates checks which block images pageImage files as the
// page: an applied, uncompressed image of a block that the record does
// not initialize, in a record whose resource manager leaves a restored
// block as it is (or a record of images alone); the restored page has the
// hole zeroed and pd_lsn set to the record's end.
func TestPageImageGates(t *testing.T) {
	page := make([]byte, pgdata.BlockSize)
	for i := range page {
		page[i] = byte(i%251) + 1
	}
	page[14], page[15] = 0x00, 0x10 // pd_upper 4096: not a new page
	const holeOff, holeLen = 100, 200
	img := append(bytes.Clone(page[:holeOff]), page[holeOff+holeLen:]...)
	block := func(edit func(b *pgdata.BlockRef)) pgdata.BlockRef {
		b := pgdata.BlockRef{HasImage: true, ApplyImage: true, Image: img,
			BimgInfo: pgdata.BkpImageHasHole | pgdata.BkpImageApply, HoleOffset: holeOff, HoleLength: holeLen}
		if edit != nil {
			edit(&b)
		}
		return b
	}
	record := func(rmgr pgdata.RmgrID, info uint8) *pgdata.Record {
		return &pgdata.Record{Header: pgdata.XLogRecordHeader{Rmid: rmgr, Info: info}, EndLSN: 0x1234_5678}
	}
	for _, tt := range []struct {
		name string
		rec  *pgdata.Record
		b    pgdata.BlockRef
		want bool
	}{
		{"heap HOT_UPDATE", record(pgdata.RmgrHeap, pgdata.XLogHeapHotUpdate), block(nil), true},
		{"heap2 PRUNE", record(pgdata.RmgrHeap2, pgdata.XLogHeap2Prune), block(nil), true},
		{"btree INSERT_LEAF", record(pgdata.RmgrBtree, 0x00), block(nil), true},
		{"generic", record(pgdata.RmgrGeneric, 0x00), block(nil), true},
		{"XLOG_FPI", record(pgdata.RmgrXLOG, pgdata.XLogFPI), block(nil), true},
		{"GiST PAGE_UPDATE", record(pgdata.RmgrGist, 0x00), block(nil), false},
		{"hash INSERT", record(pgdata.RmgrHash, 0x20), block(nil), false},
		{"GIN", record(pgdata.RmgrGin, 0x20), block(nil), false},
		{"image not applied (wal_consistency_checking)", record(pgdata.RmgrHeap, pgdata.XLogHeapHotUpdate),
			block(func(b *pgdata.BlockRef) { b.ApplyImage = false; b.BimgInfo &^= pgdata.BkpImageApply }), false},
		{"compressed image", record(pgdata.RmgrHeap, pgdata.XLogHeapHotUpdate),
			block(func(b *pgdata.BlockRef) { b.BimgInfo |= pgdata.BkpImageCompressLZ4 }), false},
		{"block the record initializes", record(pgdata.RmgrBtree, 0x00),
			block(func(b *pgdata.BlockRef) { b.WillInit = true }), false},
		{"no image", record(pgdata.RmgrHeap, pgdata.XLogHeapHotUpdate),
			block(func(b *pgdata.BlockRef) { b.HasImage, b.Image = false, nil }), false},
	} {
		t.Run(tt.name, func(t *testing.T) {
			images := tt.rec.IsPageImageRecord() || tt.rec.RestoredImagesKept()
			got, ok, err := pageImage(tt.rec, &tt.b, images)
			if err != nil {
				t.Fatal(err)
			}
			if ok != tt.want {
				t.Fatalf("filed as the page: %v, want %v", ok, tt.want)
			}
			if !ok {
				return
			}
			want := bytes.Clone(page)
			clear(want[holeOff : holeOff+holeLen])
			pgdata.SetPageLSN(want, tt.rec.EndLSN)
			if !bytes.Equal(got, want) {
				t.Errorf("page differs from the image with its hole zeroed and pd_lsn %v (got pd_lsn %v)", tt.rec.EndLSN, pgdata.PageLSN(got))
			}
		})
	}
}

// TestRecordTableSaysImagesKept checks that the record table says a
// record's applied images are filed as pages exactly for the resource
// managers RestoredImagesKept lists.
func TestRecordTableSaysImagesKept(t *testing.T) {
	for _, rt := range pgdata.RecordTypes() {
		h, ok := recordHandlings[rt]
		if !ok || h.Handling != Ingested {
			continue
		}
		rec := &pgdata.Record{Header: pgdata.XLogRecordHeader{Rmid: rt.Rmgr, Info: rt.Info}}
		kept := rec.RestoredImagesKept() && strings.Contains(h.How, "filed under every block")
		if says := strings.Contains(h.How, imagesKept); says != kept {
			t.Errorf("%v: the table says images are kept: %v; RestoredImagesKept of a record with blocks: %v", rt, says, kept)
		}
	}
}
