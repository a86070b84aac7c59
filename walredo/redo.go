package walredo

import (
	"context"
	"fmt"
	"sync"

	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/value"
)

// BufferTag names one page of a relation (PostgreSQL's BufferTag).
type BufferTag struct {
	Rel   pgdata.RelFileNode
	Fork  pgdata.ForkNumber
	Block pgdata.BlockNumber
}

// String prints the tag in the style of pg_waldump's block references.
func (t BufferTag) String() string {
	return fmt.Sprintf("rel %v fork %v blk %d", t.Rel, t.Fork, t.Block)
}

// Record is one step of a page's history after its base image: a WAL
// record for PostgreSQL to replay, or an operation applied in Go.
type Record struct {
	// LSN is the end of the WAL record (PostgreSQL's EndRecPtr), which
	// replay stamps on the page; for an operation, the end of the record
	// it came from.
	LSN pgdata.LSN
	// WAL is the raw record, XLogRecord header included. It must
	// reference the page.
	WAL []byte
	// Op is set instead of WAL for a Go-applied operation (only the
	// visibility-map ones apply to relation pages).
	Op value.Op
}

// framePool recycles request frames: a page and its records each time.
var framePool = sync.Pool{New: func() any { b := make([]byte, 0, 2*pgdata.BlockSize); return &b }}

// Redo rebuilds the page tag of tenant: base (nil: a page never written,
// all zeros) with records applied in order. WAL records go to one of the
// tenant's redo processes, batched; operations are applied in Go between
// the batches.
func (m *Manager) Redo(ctx context.Context, tenant string, tag BufferTag, base []byte, records []Record) ([]byte, error) {
	if base != nil && len(base) != pgdata.BlockSize {
		return nil, fmt.Errorf("redo %v: base image is %d bytes, want %d", tag, len(base), pgdata.BlockSize)
	}
	if !tag.Fork.Valid() || tag.Block == pgdata.InvalidBlockNumber {
		return nil, fmt.Errorf("redo %v: not a relation page", tag)
	}
	page := base   // the page so far; nil while it is all zeros
	owned := false // page is ours to change, not the caller's base
	var batch []walRecord
	var last pgdata.LSN
	flush := func() error {
		if len(batch) == 0 {
			return nil
		}
		buf := framePool.Get().(*[]byte)
		defer framePool.Put(buf)
		frame, err := appendRedoRequest((*buf)[:0], tag, page, batch)
		if err != nil {
			return err
		}
		*buf = frame
		batch = batch[:0]
		page, err = m.request(ctx, tenant, frame)
		owned = true
		return err
	}
	for i, r := range records {
		if i > 0 && r.LSN <= last {
			return nil, fmt.Errorf("redo %v: record %d at %v does not follow %v", tag, i, r.LSN, last)
		}
		last = r.LSN
		switch {
		case (r.WAL == nil) == (r.Op == nil):
			return nil, fmt.Errorf("redo %v: record %d at %v must have exactly one of WAL and Op", tag, i, r.LSN)
		case r.WAL != nil:
			batch = append(batch, walRecord{lsn: r.LSN, raw: r.WAL})
			continue
		}
		if err := flush(); err != nil {
			return nil, fmt.Errorf("redo %v up to %v: %w", tag, r.LSN, err)
		}
		if !owned {
			page = append(make([]byte, 0, pgdata.BlockSize), page...)
			page = page[:pgdata.BlockSize] // zeros when there was no base
			owned = true
		}
		if err := ApplyOp(page, tag.Block, r.Op); err != nil {
			return nil, fmt.Errorf("redo %v at %v: %w", tag, r.LSN, err)
		}
	}
	if err := flush(); err != nil {
		return nil, fmt.Errorf("redo %v up to %v: %w", tag, last, err)
	}
	if !owned && page != nil {
		return append([]byte(nil), page...), nil
	}
	if page == nil {
		return make([]byte, pgdata.BlockSize), nil
	}
	return page, nil
}

// Mask returns page masked by resource manager rmgr's rm_mask: what
// PostgreSQL's wal_consistency_checking ignores when it compares a
// replayed page with the original (hint bits, unused space, LSN...).
// It runs in one of tenant's processes.
func (m *Manager) Mask(ctx context.Context, tenant string, rmgr pgdata.RmgrID, blk pgdata.BlockNumber, page []byte) ([]byte, error) {
	if len(page) != pgdata.BlockSize {
		return nil, fmt.Errorf("mask: page is %d bytes, want %d", len(page), pgdata.BlockSize)
	}
	out, err := m.request(ctx, tenant, appendMaskRequest(nil, rmgr, blk, page))
	if err != nil {
		return nil, fmt.Errorf("mask a %v page: %w", rmgr, err)
	}
	return out, nil
}
