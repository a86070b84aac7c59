package pageserver

import (
	"context"
	"fmt"

	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/value"
	"github.com/zenithdb/zenith/walredo"
)

// NewRedo adapts a walredo.Manager to the repository's Redo: relation
// pages are rebuilt by the tenant's redo processes (WAL records, and the
// visibility-map operations in Go between them), SLRU pages by
// walredo.ApplyOp alone. Other keys never have anything but images, so
// redo of one is an error.
func NewRedo(m *walredo.Manager) repo.Redo { return &redo{m: m} }

type redo struct{ m *walredo.Manager }

// Apply implements repo.Redo. Records are stored at their WAL record's end
// LSN, which is what walredo.Record.LSN wants (the LSN replay stamps on a
// page).
func (r *redo) Apply(ctx context.Context, tenant id.TenantID, k key.Key, base []byte, records []value.Record, lsn pgdata.LSN) ([]byte, error) {
	if rel, fork, blk, ok := k.RelBlock(); ok {
		recs := make([]walredo.Record, len(records))
		for i, rec := range records {
			recs[i].LSN = rec.LSN
			switch rec.Value.Kind {
			case value.KindWALRecord:
				recs[i].WAL = rec.Value.Data
			case value.KindOp:
				op, err := value.DecodeOp(rec.Value.Data)
				if err != nil {
					return nil, fmt.Errorf("redo %v at %v: record at %v: %w", k, lsn, rec.LSN, err)
				}
				recs[i].Op = op
			default:
				return nil, fmt.Errorf("redo %v at %v: record at %v is a %v, not a record", k, lsn, rec.LSN, rec.Value.Kind)
			}
		}
		page, err := r.m.Redo(ctx, tenant.String(), walredo.BufferTag{Rel: rel, Fork: fork, Block: blk}, base, recs)
		if err != nil {
			return nil, fmt.Errorf("redo %v at %v: %w", k, lsn, err)
		}
		return page, nil
	}
	if _, segNo, blk, ok := k.SLRUPage(); ok {
		page := make([]byte, pgdata.BlockSize)
		if base != nil {
			if len(base) != pgdata.BlockSize {
				return nil, fmt.Errorf("redo %v at %v: base image is %d bytes, want %d", k, lsn, len(base), pgdata.BlockSize)
			}
			copy(page, base)
		}
		pageno := segNo*pgdata.SLRUPagesPerSegment + blk
		for _, rec := range records {
			if rec.Value.Kind != value.KindOp {
				return nil, fmt.Errorf("redo %v at %v: record at %v is a %v; SLRU pages take only operations", k, lsn, rec.LSN, rec.Value.Kind)
			}
			op, err := value.DecodeOp(rec.Value.Data)
			if err == nil {
				err = walredo.ApplyOp(page, pageno, op)
			}
			if err != nil {
				return nil, fmt.Errorf("redo %v at %v: record at %v: %w", k, lsn, rec.LSN, err)
			}
		}
		return page, nil
	}
	return nil, fmt.Errorf("redo %v at %v: %d records for a key that holds only images", k, lsn, len(records))
}
