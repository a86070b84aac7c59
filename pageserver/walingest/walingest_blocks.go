package walingest

import (
	"bytes"
	"context"
	"errors"
	"fmt"

	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/value"
	"github.com/zenithdb/zenith/walredo"
)

// zeroBlock is an all-zero page, shared by every zero image the ingest
// writes; nothing may change it.
var zeroBlock = make([]byte, pgdata.BlockSize)

// put stores v under k in the open record and remembers that it did, so
// that the extension of a fork or segment does not write the key again.
func (w *WalIngest) put(k key.Key, v value.Value) error {
	if err := w.w.Put(k, v); err != nil {
		return err
	}
	w.written[k] = true
	return nil
}

// putBlocks files the record under every block it references: redo needs
// no older version of a block the record initializes (BKPBLOCK_WILL_INIT)
// or restores from a full-page image (BKPIMAGE_APPLY). A block at or past
// its fork's end extends the fork (at the end of the record, see extend),
// as XLogReadBufferExtended does at replay.
//
// A block whose applied image replay leaves as it is is filed as the page
// itself, as replay leaves it (pageImage), so that no read of the page
// needs redo: every block of a record that is nothing but full-page images
// (XLOG_FPI, XLOG_FPI_FOR_HINT: every page of a new index, of a copied
// database, a hint bit's image), and the image of a page's first change
// after a checkpoint in records of the resource managers whose redo does
// nothing to a restored block (RestoredImagesKept: heap, btree, generic).
// The record's other blocks still get the record.
func (w *WalIngest) putBlocks(rec *pgdata.Record) error {
	if len(rec.Blocks) == 0 {
		return nil
	}
	images := rec.IsPageImageRecord() || rec.RestoredImagesKept()
	var raw []byte // one copy for every block: the decoder reuses its buffer
	for i := range rec.Blocks {
		b := &rec.Blocks[i]
		var v value.Value
		if page, ok, err := pageImage(rec, b, images); err != nil {
			return err
		} else if ok {
			v = value.Image(page)
		} else {
			if raw == nil {
				raw = bytes.Clone(rec.Raw)
			}
			v = value.WALRecord(raw, b.WillInit || b.ApplyImage)
		}
		if err := w.put(key.RelBlock(b.Rel, b.Fork, b.Block), v); err != nil {
			return err
		}
		w.extendRel(b.Rel, b.Fork, b.Block)
	}
	return nil
}

// pageImage returns the page replay leaves for block b of rec when replay
// leaves b's restored image as it is (images) and b's image is applied
// and not compressed; ok is false otherwise, and the record is filed as it
// is: a compressed image is decompressed by redo, on the read that needs
// it, and an image not applied (BKPIMAGE_APPLY unset: one that
// wal_consistency_checking adds) is only a check of the page redo makes.
// A block the record initializes (BKPBLOCK_WILL_INIT) is never restored
// from an applied image (REGBUF_WILL_INIT implies REGBUF_NO_IMAGE); if one
// came, redo would initialize the page after restoring it.
func pageImage(rec *pgdata.Record, b *pgdata.BlockRef, images bool) (page []byte, ok bool, err error) {
	if !images || !b.HasImage || !b.ApplyImage || b.Compressed() || b.WillInit {
		return nil, false, nil
	}
	page, err = b.RestoredPage(rec.EndLSN)
	if err != nil {
		return nil, false, fmt.Errorf("record at %v: %w", rec.LSN, err)
	}
	return page, true, nil
}

// extendRel notes that the open record needs fork's block blk to exist.
func (w *WalIngest) extendRel(rel pgdata.RelFileNode, fork pgdata.ForkNumber, blk pgdata.BlockNumber) {
	rf := forkRef{rel, fork}
	if n, ok := w.relExtends[rf]; !ok || blk >= n {
		w.relExtends[rf] = blk + 1
	}
}

// extendSLRU notes that the open record needs page blk of an SLRU
// segment to exist.
func (w *WalIngest) extendSLRU(s key.SLRU, segNo, blk uint32) {
	seg := slruSegment{s, segNo}
	if n, ok := w.slruExtend[seg]; !ok || blk >= n {
		w.slruExtend[seg] = blk + 1
	}
}

// extend grows the forks and SLRU segments the open record writes past
// their end. The pages in between that the record does not write become
// zero pages, as the file's would (smgrextend of zeros at replay, a hole
// in an SLRU file): this also hides what a block number held before a
// truncation or before its relfilenode was dropped and reused.
func (w *WalIngest) extend(ctx context.Context) error {
	for rf, need := range w.relExtends {
		size, err := w.w.RelSize(ctx, rf.rel, rf.fork)
		if err != nil {
			return err
		}
		if need <= size {
			continue
		}
		for blk := size; blk < need; blk++ {
			if k := key.RelBlock(rf.rel, rf.fork, blk); !w.written[k] {
				if err := w.put(k, value.Image(zeroBlock)); err != nil {
					return err
				}
			}
		}
		if err := w.w.SetRelSize(ctx, rf.rel, rf.fork, need); err != nil {
			return err
		}
	}
	for seg, need := range w.slruExtend {
		size, err := w.slruSegmentSize(ctx, seg)
		if err != nil {
			return err
		}
		if need <= size {
			continue
		}
		for blk := size; blk < need; blk++ {
			if k := key.SLRUPage(seg.slru, seg.segNo, blk); !w.written[k] {
				if err := w.put(k, value.Image(zeroBlock)); err != nil {
					return err
				}
			}
		}
		if err := w.w.SetSLRUSegmentSize(ctx, seg.slru, seg.segNo, need); err != nil {
			return err
		}
	}
	return nil
}

// slruSegmentSize returns an SLRU segment's size in pages as of the open
// record; 0 for a segment that does not exist.
func (w *WalIngest) slruSegmentSize(ctx context.Context, seg slruSegment) (uint32, error) {
	k := key.SLRUSegmentSize(seg.slru, seg.segNo)
	if n, ok := w.w.PendingSize(k); ok {
		return n, nil
	}
	b, err := w.tl.Get(ctx, k, w.tl.LastRecordLSN())
	if errors.Is(err, repo.ErrKeyNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read %v: %w", k, err)
	}
	n, err := value.DecodeSize(b)
	if err != nil {
		return 0, fmt.Errorf("read %v: %w", k, err)
	}
	return n, nil
}

// opSLRUs maps the SLRU kinds of walredo's operations to the repository's.
var opSLRUs = map[walredo.PageKind]key.SLRU{
	walredo.PageClog:             key.Clog,
	walredo.PageMultiXactOffsets: key.MultiXactOffsets,
	walredo.PageMultiXactMembers: key.MultiXactMembers,
}

// opKey is the key of the page an operation changes.
func (w *WalIngest) opKey(op walredo.PageOp) key.Key {
	if op.Kind == walredo.PageVisibilityMap {
		return key.RelBlock(op.Rel, pgdata.ForkVM, op.Page)
	}
	segNo, blk := pgdata.SLRUSegment(op.Page)
	return key.SLRUPage(opSLRUs[op.Kind], segNo, blk)
}

// putOps stores the changes redo applies in Go, one value per page: a
// zero image for a page the record zeroes, the operation for a page it
// changes once, and for a page it changes more than once (a multixact's
// offset and the next one's, an update clearing two heap blocks' bits on
// one map page) the operations merged into one, or if they cannot be, the
// page itself, rebuilt and changed here.
//
// No operation may change a page the record references as a block: the
// value putBlocks filed for it (the record, or the page restored from its
// image) would be replaced. None does in PostgreSQL 15: the heap records
// whose map bits are cleared here reference heap (main fork) blocks only,
// XLOG_HEAP2_VISIBLE, which references its map block, has no operation,
// and the other records with operations reference no block.
func (w *WalIngest) putOps(ctx context.Context, rec *pgdata.Record, ops []walredo.PageOp) error {
	var keys []key.Key
	byKey := map[key.Key][]walredo.PageOp{}
	for _, op := range ops {
		if op.Kind == walredo.PageVisibilityMap {
			w.extendRel(op.Rel, pgdata.ForkVM, op.Page)
		} else {
			segNo, blk := pgdata.SLRUSegment(op.Page)
			w.extendSLRU(opSLRUs[op.Kind], segNo, blk)
		}
		k := w.opKey(op)
		for i := range rec.Blocks {
			if b := &rec.Blocks[i]; key.RelBlock(b.Rel, b.Fork, b.Block) == k {
				return fmt.Errorf("record at %v changes %v through block reference %d and in Go", rec.LSN, k, b.ID)
			}
		}
		if _, ok := byKey[k]; !ok {
			keys = append(keys, k)
		}
		byKey[k] = append(byKey[k], op)
	}
	for _, k := range keys {
		ops := byKey[k]
		var v value.Value
		switch merged, ok := mergeOps(ops); {
		case len(ops) == 1 && ops[0].Zero:
			v = value.Image(zeroBlock)
		case ok:
			v = value.OpValue(merged, false)
		default:
			page, err := w.rebuildPage(ctx, k, ops)
			if err != nil {
				return err
			}
			v = value.Image(page)
		}
		if err := w.put(k, v); err != nil {
			return err
		}
	}
	return nil
}

// mergeOps returns one operation doing what ops do, if there is one.
func mergeOps(ops []walredo.PageOp) (value.Op, bool) {
	for _, op := range ops {
		if op.Zero {
			return nil, false
		}
	}
	if len(ops) == 1 {
		return ops[0].Op, true
	}
	switch first := ops[0].Op.(type) {
	case value.VMClear:
		m := value.VMClear{Flags: first.Flags}
		for _, op := range ops {
			c, ok := op.Op.(value.VMClear)
			if !ok || c.Flags != first.Flags {
				return nil, false
			}
			m.HeapBlocks = append(m.HeapBlocks, c.HeapBlocks...)
		}
		return m, true
	case value.ClogSetStatus:
		m := value.ClogSetStatus{Status: first.Status}
		for _, op := range ops {
			c, ok := op.Op.(value.ClogSetStatus)
			if !ok || c.Status != first.Status {
				return nil, false
			}
			m.Xids = append(m.Xids, c.Xids...)
		}
		return m, true
	}
	return nil, false
}

// rebuildPage returns the page k as of the last record with ops applied.
// A page past its fork's or segment's end is all zeros, whatever the key
// held before a truncation.
func (w *WalIngest) rebuildPage(ctx context.Context, k key.Key, ops []walredo.PageOp) ([]byte, error) {
	page := make([]byte, pgdata.BlockSize)
	var size uint32
	var blk uint32
	var err error
	if op := ops[0]; op.Kind == walredo.PageVisibilityMap {
		blk = op.Page
		size, err = w.w.RelSize(ctx, op.Rel, pgdata.ForkVM)
	} else {
		var segNo uint32
		segNo, blk = pgdata.SLRUSegment(op.Page)
		size, err = w.slruSegmentSize(ctx, slruSegment{opSLRUs[op.Kind], segNo})
	}
	if err != nil {
		return nil, err
	}
	var b []byte
	if blk < size {
		b, err = w.tl.Get(ctx, k, w.tl.LastRecordLSN())
	}
	switch {
	case blk >= size, errors.Is(err, repo.ErrKeyNotFound):
	case err != nil:
		return nil, fmt.Errorf("read %v to change it: %w", k, err)
	default:
		copy(page, b)
	}
	for _, op := range ops {
		if op.Zero {
			clear(page)
			continue
		}
		if err := walredo.ApplyOp(page, op.Page, op.Op); err != nil {
			return nil, fmt.Errorf("change %v: %w", k, err)
		}
	}
	return page, nil
}
