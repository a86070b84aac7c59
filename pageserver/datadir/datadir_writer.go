package datadir

import (
	"cmp"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"slices"

	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/value"
)

// DatadirWriter changes a timeline's data-directory model: import and WAL
// ingest both go through it, so the directories and sizes mean the same
// whoever wrote them. Changes are grouped into records: Begin(lsn), any
// number of changes, Commit(prev). Pages and files are Put at once;
// directories and sizes are kept in memory and written once, at Commit,
// because the repository takes one value per key per LSN.
//
// The writer caches the directories it has read, so it must be the only
// writer of its timeline; after an error it must be discarded.
type DatadirWriter struct {
	tl  *repo.Timeline
	lsn pgdata.LSN // the open record's LSN, 0 outside a record

	dbDir     *DBDir
	tblspcDir *TablespaceDir
	relDirs   map[Database]*RelDir
	slruDirs  map[key.SLRU]*SLRUDir
	twoPhase  *TwoPhaseDir
	auxDir    *AuxDir
	// dirty holds the directories and sizes changed in the open record,
	// encoded at Commit.
	dirty map[key.Key]func() []byte
	sizes map[key.Key]uint32
}

// NewDatadirWriter returns a writer of tl's data-directory model.
func NewDatadirWriter(tl *repo.Timeline) *DatadirWriter {
	return &DatadirWriter{
		tl:       tl,
		relDirs:  map[Database]*RelDir{},
		slruDirs: map[key.SLRU]*SLRUDir{},
		dirty:    map[key.Key]func() []byte{},
		sizes:    map[key.Key]uint32{},
	}
}

// Begin opens a record whose changes are stored at lsn (the record's end,
// as every value of a record is).
func (w *DatadirWriter) Begin(lsn pgdata.LSN) { w.lsn = lsn }

// Commit writes the open record's directories and sizes and makes the
// record visible: the timeline's last record LSN becomes the record's LSN
// and its previous record LSN prev (the record's start).
func (w *DatadirWriter) Commit(prev pgdata.LSN) error {
	if w.lsn == 0 {
		return errors.New("datadir commit without Begin")
	}
	for k, enc := range w.dirty {
		if err := w.tl.Put(k, w.lsn, value.Image(enc())); err != nil {
			return fmt.Errorf("write %v: %w", k, err)
		}
	}
	for k, n := range w.sizes {
		if err := w.tl.Put(k, w.lsn, value.Size(n)); err != nil {
			return fmt.Errorf("write %v: %w", k, err)
		}
	}
	clear(w.dirty)
	clear(w.sizes)
	if err := w.tl.FinishWrite(w.lsn, prev); err != nil {
		return fmt.Errorf("commit record at %v: %w", w.lsn, err)
	}
	w.lsn = 0
	return nil
}

// Put stores one value in the open record.
func (w *DatadirWriter) Put(k key.Key, v value.Value) error {
	if w.lsn == 0 {
		return fmt.Errorf("put %v outside a record", k)
	}
	if err := w.tl.Put(k, w.lsn, v); err != nil {
		return fmt.Errorf("put %v: %w", k, err)
	}
	return nil
}

// load returns the directory stored under k before the open record,
// decoded, or an empty one if the timeline has none.
func load[T any](ctx context.Context, w *DatadirWriter, k key.Key, decode func([]byte) (T, error)) (T, error) {
	var zero T
	b, err := w.tl.Get(ctx, k, w.tl.LastRecordLSN())
	switch {
	case errors.Is(err, repo.ErrKeyNotFound):
		return zero, nil
	case err != nil:
		return zero, fmt.Errorf("read %v: %w", k, err)
	}
	d, err := decode(b)
	if err != nil {
		return zero, fmt.Errorf("read %v: %w", k, err)
	}
	return d, nil
}

func (w *DatadirWriter) databases(ctx context.Context) (*DBDir, error) {
	if w.dbDir == nil {
		d, err := load(ctx, w, key.DBDir(), DecodeDBDir)
		if err != nil {
			return nil, err
		}
		w.dbDir = &d
	}
	return w.dbDir, nil
}

func (w *DatadirWriter) relations(ctx context.Context, db Database) (*RelDir, error) {
	if d, ok := w.relDirs[db]; ok {
		return d, nil
	}
	d, err := load(ctx, w, key.RelDir(db.SpcNode, db.DbNode), DecodeRelDir)
	if err != nil {
		return nil, err
	}
	w.relDirs[db] = &d
	return &d, nil
}

// Databases returns the list of databases as of the open record.
func (w *DatadirWriter) Databases(ctx context.Context) (DBDir, error) {
	d, err := w.databases(ctx)
	if err != nil {
		return nil, err
	}
	return slices.Clone(*d), nil
}

// Relations returns a database's relations as of the open record.
func (w *DatadirWriter) Relations(ctx context.Context, db Database) (RelDir, error) {
	d, err := w.relations(ctx, db)
	if err != nil {
		return nil, err
	}
	return slices.Clone(*d), nil
}

// CreateDatabase adds a database (with no relations yet) if it is not
// listed: CREATE DATABASE, or the first relation of one.
func (w *DatadirWriter) CreateDatabase(ctx context.Context, db Database) error {
	d, err := w.databases(ctx)
	if err != nil {
		return err
	}
	if insertSorted((*[]Database)(d), db, CompareDatabase) {
		w.dirty[key.DBDir()] = func() []byte { return EncodeDBDir(*w.dbDir) }
		rels, err := w.relations(ctx, db)
		if err != nil {
			return err
		}
		w.markRelDir(db, rels)
	}
	return nil
}

// DropDatabase removes a database and every relation it lists (DROP
// DATABASE). Its keys stay in the repository for reads at older LSNs.
func (w *DatadirWriter) DropDatabase(ctx context.Context, db Database) error {
	d, err := w.databases(ctx)
	if err != nil {
		return err
	}
	if removeSorted((*[]Database)(d), db, CompareDatabase) {
		w.dirty[key.DBDir()] = func() []byte { return EncodeDBDir(*w.dbDir) }
	}
	rels, err := w.relations(ctx, db)
	if err != nil {
		return err
	}
	for _, e := range *rels {
		for f := range pgdata.MaxFork + 1 {
			if e.Forks.Has(f) {
				w.sizes[key.RelSize(pgdata.RelFileNode{SpcNode: db.SpcNode, DbNode: db.DbNode, RelNode: e.RelNode}, f)] = 0
			}
		}
	}
	*rels = (*rels)[:0]
	w.markRelDir(db, rels)
	return nil
}

func (w *DatadirWriter) markRelDir(db Database, d *RelDir) {
	w.dirty[key.RelDir(db.SpcNode, db.DbNode)] = func() []byte { return EncodeRelDir(*d) }
}

// CompareRelEntry orders relations by relfilenode.
func CompareRelEntry(a, b RelEntry) int { return cmp.Compare(a.RelNode, b.RelNode) }

// CreateRelation adds a fork of a relation with size 0 if it does not
// exist, and its database if that is not listed (smgrcreate).
func (w *DatadirWriter) CreateRelation(ctx context.Context, rel pgdata.RelFileNode, fork pgdata.ForkNumber) error {
	if rel.RelNode == 0 || !fork.Valid() {
		return fmt.Errorf("create relation %v fork %d: invalid relation or fork", rel, fork)
	}
	db := Database{rel.SpcNode, rel.DbNode}
	if err := w.CreateDatabase(ctx, db); err != nil {
		return err
	}
	rels, err := w.relations(ctx, db)
	if err != nil {
		return err
	}
	i, found := slices.BinarySearchFunc(*rels, RelEntry{RelNode: rel.RelNode}, CompareRelEntry)
	switch {
	case !found:
		*rels = slices.Insert(*rels, i, RelEntry{rel.RelNode, 1 << fork})
	case (*rels)[i].Forks.Has(fork):
		return nil
	default:
		(*rels)[i].Forks |= 1 << fork
	}
	w.markRelDir(db, rels)
	w.sizes[key.RelSize(rel, fork)] = 0
	return nil
}

// DropRelation removes a fork of a relation (smgrunlink at commit); its
// size becomes 0.
func (w *DatadirWriter) DropRelation(ctx context.Context, rel pgdata.RelFileNode, fork pgdata.ForkNumber) error {
	db := Database{rel.SpcNode, rel.DbNode}
	rels, err := w.relations(ctx, db)
	if err != nil {
		return err
	}
	i, found := slices.BinarySearchFunc(*rels, RelEntry{RelNode: rel.RelNode}, CompareRelEntry)
	if !found || !(*rels)[i].Forks.Has(fork) {
		return nil
	}
	(*rels)[i].Forks &^= 1 << fork
	if (*rels)[i].Forks == 0 {
		*rels = slices.Delete(*rels, i, i+1)
	}
	w.markRelDir(db, rels)
	w.sizes[key.RelSize(rel, fork)] = 0
	return nil
}

// RelationExists reports whether a fork of a relation is listed as of the
// open record.
func (w *DatadirWriter) RelationExists(ctx context.Context, rel pgdata.RelFileNode, fork pgdata.ForkNumber) (bool, error) {
	rels, err := w.relations(ctx, Database{rel.SpcNode, rel.DbNode})
	if err != nil {
		return false, err
	}
	i, found := slices.BinarySearchFunc(*rels, RelEntry{RelNode: rel.RelNode}, CompareRelEntry)
	return found && (*rels)[i].Forks.Has(fork), nil
}

// RelSize returns a fork's size in blocks as of the open record (0 for a
// fork that does not exist).
func (w *DatadirWriter) RelSize(ctx context.Context, rel pgdata.RelFileNode, fork pgdata.ForkNumber) (uint32, error) {
	if n, ok := w.sizes[key.RelSize(rel, fork)]; ok {
		return n, nil
	}
	n, err := w.tl.RelSize(ctx, rel, fork, w.tl.LastRecordLSN())
	if errors.Is(err, repo.ErrKeyNotFound) {
		return 0, nil
	}
	return n, err
}

// SetRelSize sets a fork's size in blocks (extend or truncate), creating
// the fork if it does not exist.
func (w *DatadirWriter) SetRelSize(ctx context.Context, rel pgdata.RelFileNode, fork pgdata.ForkNumber, blocks uint32) error {
	if err := w.CreateRelation(ctx, rel, fork); err != nil {
		return err
	}
	w.sizes[key.RelSize(rel, fork)] = blocks
	return nil
}

// PutRelBlock stores one block of a relation (an image, or a record for
// redo). It does not change the size: callers extend with SetRelSize.
func (w *DatadirWriter) PutRelBlock(rel pgdata.RelFileNode, fork pgdata.ForkNumber, blk pgdata.BlockNumber, v value.Value) error {
	return w.Put(key.RelBlock(rel, fork, blk), v)
}

// PutRelMap stores a database's relmapper file (pg_filenode.map); db
// {GlobalTablespaceOID, 0} is global/pg_filenode.map.
func (w *DatadirWriter) PutRelMap(db Database, file []byte) error {
	return w.Put(key.RelMap(db.SpcNode, db.DbNode), value.Image(file))
}

func (w *DatadirWriter) segments(ctx context.Context, s key.SLRU) (*SLRUDir, error) {
	if d, ok := w.slruDirs[s]; ok {
		return d, nil
	}
	d, err := load(ctx, w, key.SLRUDir(s), DecodeSLRUDir)
	if err != nil {
		return nil, err
	}
	w.slruDirs[s] = &d
	return &d, nil
}

// SLRUSegments returns an SLRU's segment numbers as of the open record.
func (w *DatadirWriter) SLRUSegments(ctx context.Context, s key.SLRU) (SLRUDir, error) {
	d, err := w.segments(ctx, s)
	if err != nil {
		return nil, err
	}
	return slices.Clone(*d), nil
}

// SetSLRUSegmentSize lists an SLRU segment (creating it if needed) and sets
// its size in pages.
func (w *DatadirWriter) SetSLRUSegmentSize(ctx context.Context, s key.SLRU, segNo, pages uint32) error {
	d, err := w.segments(ctx, s)
	if err != nil {
		return err
	}
	if insertSorted((*[]uint32)(d), segNo, cmp.Compare[uint32]) {
		w.dirty[key.SLRUDir(s)] = func() []byte { return EncodeSLRUDir(*d) }
	}
	w.sizes[key.SLRUSegmentSize(s, segNo)] = pages
	return nil
}

// RemoveSLRUSegment removes an SLRU segment (truncation); its size
// becomes 0.
func (w *DatadirWriter) RemoveSLRUSegment(ctx context.Context, s key.SLRU, segNo uint32) error {
	d, err := w.segments(ctx, s)
	if err != nil {
		return err
	}
	if removeSorted((*[]uint32)(d), segNo, cmp.Compare[uint32]) {
		w.dirty[key.SLRUDir(s)] = func() []byte { return EncodeSLRUDir(*d) }
		w.sizes[key.SLRUSegmentSize(s, segNo)] = 0
	}
	return nil
}

// PutSLRUPage stores one page of an SLRU segment (an image or an op).
func (w *DatadirWriter) PutSLRUPage(s key.SLRU, segNo, blk uint32, v value.Value) error {
	return w.Put(key.SLRUPage(s, segNo, blk), v)
}

func (w *DatadirWriter) prepared(ctx context.Context) (*TwoPhaseDir, error) {
	if w.twoPhase == nil {
		d, err := load(ctx, w, key.TwoPhaseDir(), DecodeTwoPhaseDir)
		if err != nil {
			return nil, err
		}
		w.twoPhase = &d
	}
	return w.twoPhase, nil
}

// PutTwoPhaseFile stores a prepared transaction's state file
// (pg_twophase/<xid>) and lists it.
func (w *DatadirWriter) PutTwoPhaseFile(ctx context.Context, xid uint32, file []byte) error {
	if xid == 0 {
		return errors.New("two-phase file for xid 0")
	}
	d, err := w.prepared(ctx)
	if err != nil {
		return err
	}
	if insertSorted((*[]uint32)(d), xid, cmp.Compare[uint32]) {
		w.dirty[key.TwoPhaseDir()] = func() []byte { return EncodeTwoPhaseDir(*w.twoPhase) }
	}
	return w.Put(key.TwoPhaseFile(xid), value.Image(file))
}

// RemoveTwoPhaseFile unlists a prepared transaction (COMMIT/ROLLBACK
// PREPARED).
func (w *DatadirWriter) RemoveTwoPhaseFile(ctx context.Context, xid uint32) error {
	d, err := w.prepared(ctx)
	if err != nil {
		return err
	}
	if removeSorted((*[]uint32)(d), xid, cmp.Compare[uint32]) {
		w.dirty[key.TwoPhaseDir()] = func() []byte { return EncodeTwoPhaseDir(*w.twoPhase) }
	}
	return nil
}

// PutControlFile stores pg_control (the whole 8 KiB file).
func (w *DatadirWriter) PutControlFile(file []byte) error {
	return w.Put(key.Control(), value.Image(file))
}

// PutCheckpoint stores the latest checkpoint (the 88-byte CheckPoint).
func (w *DatadirWriter) PutCheckpoint(cp *pgdata.CheckPoint) error {
	return w.Put(key.Checkpoint(), value.Image(cp.Encode()))
}

// PutAuxFile stores an auxiliary file by its slash-separated path relative
// to the data directory, and lists it.
func (w *DatadirWriter) PutAuxFile(ctx context.Context, path string, contents []byte) error {
	if err := checkAuxPath(path); err != nil {
		return err
	}
	d, err := w.auxFiles(ctx)
	if err != nil {
		return err
	}
	if insertSorted((*[]string)(d), path, cmp.Compare[string]) {
		w.dirty[key.AuxFile(AuxDirPath)] = func() []byte { return EncodeAuxFile(AuxDirPath, EncodeAuxDir(*w.auxDir)) }
	}
	return w.Put(key.AuxFile(path), value.Image(EncodeAuxFile(path, contents)))
}

// DecodeAuxDirValue decodes the value under key.AuxFile(AuxDirPath): an
// auxiliary-file value with the empty path whose contents are the AuxDir.
func DecodeAuxDirValue(b []byte) (AuxDir, error) {
	if len(b) < 4 || b[0] != auxFileMagic || b[1] != auxFileVersion || binary.BigEndian.Uint16(b[2:]) != 0 {
		return nil, fmt.Errorf("%w: auxiliary file directory value: bad header", ErrMalformedDir)
	}
	return DecodeAuxDir(b[4:])
}
