package datadir

import (
	"context"
	"errors"
	"fmt"

	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/value"
)

// Errors a DatadirReader's callers branch on.
var (
	// ErrNoControlFile: the timeline has no pg_control at the LSN, so
	// nothing was imported into it (or the LSN is before the import).
	ErrNoControlFile = errors.New("timeline has no pg_control: no data directory was imported")
	// ErrRelationNotFound: a relation fork the data-directory model does
	// not have at the LSN.
	ErrRelationNotFound = errors.New("relation fork not found")
)

// zeroPage is what a block or SLRU page reads as when it is inside its
// file but was never written: what PostgreSQL finds in a hole md.c left
// when it extended a relation past blocks it never wrote.
var zeroPage [pgdata.BlockSize]byte

// DatadirReader reads a timeline's data-directory model (see the package
// doc) as of one LSN: directories, sizes, pages and files. Basebackup and
// the page service's nblocks/exists/dbsize read through it, so they agree
// on what a directory means. It holds no state beyond the timeline and the
// LSN and is safe for concurrent use; each read checks the LSN against the
// timeline (repo.ErrLSNNotReached, repo.ErrBelowGCCutoff).
type DatadirReader struct {
	tl  *repo.Timeline
	lsn pgdata.LSN
}

// NewDatadirReader returns a reader of tl as of lsn.
func NewDatadirReader(tl *repo.Timeline, lsn pgdata.LSN) *DatadirReader {
	return &DatadirReader{tl: tl, lsn: lsn}
}

// LSN is the LSN the reader reads at.
func (r *DatadirReader) LSN() pgdata.LSN { return r.lsn }

// get reads k at the reader's LSN; found is false for a key without a
// value there.
func (r *DatadirReader) get(ctx context.Context, k key.Key) (b []byte, found bool, err error) {
	return r.find(ctx, k, r.tl.Get)
}

// find is get through read: Timeline.Get, or GetReadOnly for a value
// the caller does not modify.
func (r *DatadirReader) find(ctx context.Context, k key.Key, read func(context.Context, key.Key, pgdata.LSN) ([]byte, error)) (b []byte, found bool, err error) {
	b, err = read(ctx, k, r.lsn)
	switch {
	case errors.Is(err, repo.ErrKeyNotFound):
		return nil, false, nil
	case err != nil:
		return nil, false, fmt.Errorf("read %v at %v: %w", k, r.lsn, err)
	}
	return b, true, nil
}

// readDir reads and decodes a directory value; a directory never written
// is empty.
func readDir[T any](ctx context.Context, r *DatadirReader, k key.Key, decode func([]byte) (T, error)) (T, error) {
	var zero T
	b, found, err := r.get(ctx, k)
	if err != nil || !found {
		return zero, err
	}
	d, err := decode(b)
	if err != nil {
		return zero, fmt.Errorf("read %v at %v: %w", k, r.lsn, err)
	}
	return d, nil
}

// Databases lists the databases, the global one ({GlobalTablespaceOID, 0})
// included.
func (r *DatadirReader) Databases(ctx context.Context) (DBDir, error) {
	return readDir(ctx, r, key.DBDir(), DecodeDBDir)
}

// Relations lists a database's relations and their forks.
func (r *DatadirReader) Relations(ctx context.Context, db Database) (RelDir, error) {
	return readDir(ctx, r, key.RelDir(db.SpcNode, db.DbNode), DecodeRelDir)
}

// RelExists reports whether a fork of a relation exists (smgrexists).
func (r *DatadirReader) RelExists(ctx context.Context, rel pgdata.RelFileNode, fork pgdata.ForkNumber) (bool, error) {
	rels, err := r.Relations(ctx, Database{rel.SpcNode, rel.DbNode})
	if err != nil {
		return false, err
	}
	for _, e := range rels {
		if e.RelNode == rel.RelNode {
			return e.Forks.Has(fork), nil
		}
	}
	return false, nil
}

// RelSize returns a fork's size in blocks (smgrnblocks). A fork that was
// never created is ErrRelationNotFound; a dropped one has size 0 (callers
// that must tell the two apart ask RelExists).
func (r *DatadirReader) RelSize(ctx context.Context, rel pgdata.RelFileNode, fork pgdata.ForkNumber) (uint32, error) {
	n, err := r.tl.RelSize(ctx, rel, fork, r.lsn)
	switch {
	case errors.Is(err, repo.ErrKeyNotFound):
		return 0, fmt.Errorf("size of %v fork %v at %v: %w", rel, fork, r.lsn, ErrRelationNotFound)
	case err != nil:
		return 0, fmt.Errorf("size of %v fork %v at %v: %w", rel, fork, r.lsn, err)
	}
	return n, nil
}

// RelPage returns one block of a relation fork. A block never written
// reads as zeros, as a hole in a relation file does; the caller checks
// the block against RelSize when that matters. The page must not be
// modified: it may be the page cache's, or the zero page.
func (r *DatadirReader) RelPage(ctx context.Context, rel pgdata.RelFileNode, fork pgdata.ForkNumber, blk pgdata.BlockNumber) ([]byte, error) {
	b, found, err := r.find(ctx, key.RelBlock(rel, fork, blk), r.tl.GetReadOnly)
	if err != nil || found {
		return b, err
	}
	return zeroPage[:], nil
}

// RelPageLater is RelPage for a batch read (repo.WithBatchRead) that
// goes on while a page's redo runs: a page that needs redo comes back as
// a PageLater, whose Wait gives it (repo.Timeline.GetLater).
func (r *DatadirReader) RelPageLater(ctx context.Context, rel pgdata.RelFileNode, fork pgdata.ForkNumber, blk pgdata.BlockNumber) ([]byte, *PageLater, error) {
	k := key.RelBlock(rel, fork, blk)
	b, p, err := r.tl.GetLater(ctx, k, r.lsn)
	switch {
	case errors.Is(err, repo.ErrKeyNotFound):
		return zeroPage[:], nil, nil
	case err != nil:
		return nil, nil, fmt.Errorf("read %v at %v: %w", k, r.lsn, err)
	case p != nil:
		return nil, &PageLater{p: p, k: k, lsn: r.lsn}, nil
	}
	return b, nil, nil
}

// PageLater is a page of RelPageLater whose redo is under way.
type PageLater struct {
	p   *repo.Pending
	k   key.Key
	lsn pgdata.LSN
}

// Wait returns the page once rebuilt; it must not be modified.
func (l *PageLater) Wait() ([]byte, error) {
	b, err := l.p.Wait()
	if err != nil {
		return nil, fmt.Errorf("read %v at %v: %w", l.k, l.lsn, err)
	}
	return b, nil
}

// DBSize returns a database's size in bytes: the sum of its relation
// forks' sizes, what pg_database_size reports for its relation files.
func (r *DatadirReader) DBSize(ctx context.Context, db Database) (int64, error) {
	rels, err := r.Relations(ctx, db)
	if err != nil {
		return 0, err
	}
	var total int64
	for _, e := range rels {
		for f := range pgdata.MaxFork + 1 {
			if !e.Forks.Has(f) {
				continue
			}
			n, err := r.RelSize(ctx, pgdata.RelFileNode{SpcNode: db.SpcNode, DbNode: db.DbNode, RelNode: e.RelNode}, f)
			if err != nil && !errors.Is(err, ErrRelationNotFound) {
				return 0, err
			}
			total += int64(n) * pgdata.BlockSize
		}
	}
	return total, nil
}

// RelMap returns a database's relmapper file (pg_filenode.map); found is
// false if it has none (a database whose creation is still in progress at
// the LSN).
func (r *DatadirReader) RelMap(ctx context.Context, db Database) (file []byte, found bool, err error) {
	return r.get(ctx, key.RelMap(db.SpcNode, db.DbNode))
}

// SLRUSegments lists an SLRU's segments.
func (r *DatadirReader) SLRUSegments(ctx context.Context, s key.SLRU) (SLRUDir, error) {
	return readDir(ctx, r, key.SLRUDir(s), DecodeSLRUDir)
}

// SLRUSegmentSize returns an SLRU segment's size in pages (0 for one
// never written).
func (r *DatadirReader) SLRUSegmentSize(ctx context.Context, s key.SLRU, segNo uint32) (uint32, error) {
	k := key.SLRUSegmentSize(s, segNo)
	b, found, err := r.get(ctx, k)
	if err != nil || !found {
		return 0, err
	}
	n, err := value.DecodeSize(b)
	if err != nil {
		return 0, fmt.Errorf("read %v at %v: %w", k, r.lsn, err)
	}
	if n > pgdata.SLRUPagesPerSegment {
		return 0, fmt.Errorf("read %v at %v: %d pages, more than a segment's %d", k, r.lsn, n, pgdata.SLRUPagesPerSegment)
	}
	return n, nil
}

// SLRUPage returns one page of an SLRU segment; a page never written reads
// as zeros.
func (r *DatadirReader) SLRUPage(ctx context.Context, s key.SLRU, segNo, blk uint32) ([]byte, error) {
	b, found, err := r.get(ctx, key.SLRUPage(s, segNo, blk))
	if err != nil || found {
		return b, err
	}
	return zeroPage[:], nil
}

// TwoPhaseFiles lists the prepared transactions' xids.
func (r *DatadirReader) TwoPhaseFiles(ctx context.Context) (TwoPhaseDir, error) {
	return readDir(ctx, r, key.TwoPhaseDir(), DecodeTwoPhaseDir)
}

// TwoPhaseFile returns a prepared transaction's state file.
func (r *DatadirReader) TwoPhaseFile(ctx context.Context, xid uint32) ([]byte, error) {
	b, found, err := r.get(ctx, key.TwoPhaseFile(xid))
	if err == nil && !found {
		err = fmt.Errorf("two-phase state file of listed xid %d missing at %v", xid, r.lsn)
	}
	return b, err
}

// DataChecksums reports whether the cluster keeps data checksums in its
// pages (pg_control's data_checksum_version; initdb -k or the imported
// cluster's, fixed for a timeline's life): then a page handed to a
// compute needs its checksum set (pgdata.SetPageChecksum). A timeline
// without pg_control has none.
func (r *DatadirReader) DataChecksums(ctx context.Context) (bool, error) {
	cf, err := r.ControlFile(ctx)
	if errors.Is(err, ErrNoControlFile) {
		return false, nil
	}
	if err != nil {
		return false, err
	}
	return cf.DataChecksumVersion != 0, nil
}

// ControlFile returns the stored pg_control, parsed; ErrNoControlFile if
// the timeline has none.
func (r *DatadirReader) ControlFile(ctx context.Context) (*pgdata.ControlFile, error) {
	b, found, err := r.get(ctx, key.Control())
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("read pg_control at %v: %w", r.lsn, ErrNoControlFile)
	}
	cf, err := pgdata.ParseControlFile(b)
	if err != nil {
		return nil, fmt.Errorf("read pg_control at %v: %w", r.lsn, err)
	}
	return cf, nil
}

// Checkpoint returns the latest checkpoint as kept up to date by ingest:
// the counters (next XID, OID, multixact...) a server started at the LSN
// must begin with.
func (r *DatadirReader) Checkpoint(ctx context.Context) (pgdata.CheckPoint, error) {
	b, found, err := r.get(ctx, key.Checkpoint())
	if err != nil {
		return pgdata.CheckPoint{}, err
	}
	if !found {
		return pgdata.CheckPoint{}, fmt.Errorf("read checkpoint at %v: %w", r.lsn, ErrNoControlFile)
	}
	cp, err := pgdata.ParseCheckPoint(b)
	if err != nil {
		return pgdata.CheckPoint{}, fmt.Errorf("read checkpoint at %v: %w", r.lsn, err)
	}
	return cp, nil
}

// AuxFiles lists the auxiliary files' paths.
func (r *DatadirReader) AuxFiles(ctx context.Context) (AuxDir, error) {
	return readDir(ctx, r, key.AuxFile(AuxDirPath), DecodeAuxDirValue)
}

// AuxFile returns a listed auxiliary file's contents.
func (r *DatadirReader) AuxFile(ctx context.Context, path string) ([]byte, error) {
	b, found, err := r.get(ctx, key.AuxFile(path))
	if err != nil {
		return nil, err
	}
	if !found {
		return nil, fmt.Errorf("auxiliary file %s listed but missing at %v", path, r.lsn)
	}
	p, contents, err := DecodeAuxFile(b)
	if err != nil {
		return nil, fmt.Errorf("auxiliary file %s at %v: %w", path, r.lsn, err)
	}
	if p != path {
		// key.AuxFile hashes the path: a collision must not serve one
		// file's contents under another's name.
		return nil, fmt.Errorf("auxiliary file %s at %v: key holds %s (hash collision)", path, r.lsn, p)
	}
	return contents, nil
}
