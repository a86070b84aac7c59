package walingest

import (
	"context"
	"errors"
	"fmt"

	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/pageserver/datadir"
	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/walredo"
)

// ErrIngestOrder is returned by Ingest for a record that does not follow
// the last one ingested: one that starts before the timeline's last record
// LSN (already ingested), or whose xl_prev is not the previous record.
var ErrIngestOrder = errors.New("WAL record out of order")

// ErrUnsupportedRecord is returned by Ingest for a record type
// ClassifyRecord calls unsupported. Since tablespaces are ingested no
// PostgreSQL 15 record type is refused; it stays for callers that tell
// such a failure apart.
var ErrUnsupportedRecord = errors.New("unsupported WAL record")

// WalIngest files decoded WAL records into a timeline: every record under
// every block it references, and the data-directory model (databases,
// relations and their sizes, relation maps, SLRUs, prepared transactions,
// pg_control and the checkpoint) changed as PostgreSQL's redo changes the
// files. There is one per timeline and it is its only writer: it owns the
// timeline's DatadirWriter.
//
// A record is decoded completely before anything is written, so a
// malformed record fails Ingest without changing the timeline and the
// WalIngest stays usable. A failure while writing (the repository's) leaves
// the record half-written: the WalIngest then fails every later call, and
// the timeline must be reopened (its in-memory layer is lost, and WAL
// after its disk-consistent LSN ingested again).
type WalIngest struct {
	tl  *repo.Timeline
	w   *datadir.DatadirWriter
	log zerolog.Logger

	control pgdata.ControlFile // as stored, with parameter changes applied
	cp      pgdata.CheckPoint  // as stored at the last record

	// The open record's keys already written and the forks and SLRU
	// segments it extends (see blocks.go), reset by every Ingest.
	written    map[key.Key]bool
	relExtends map[forkRef]uint32
	slruExtend map[slruSegment]uint32

	err error // sticky: a record was half-written
}

// forkRef names one fork of a relation.
type forkRef struct {
	rel  pgdata.RelFileNode
	fork pgdata.ForkNumber
}

// slruSegment names one segment of an SLRU.
type slruSegment struct {
	slru  key.SLRU
	segNo uint32
}

// NewWalIngest returns the ingest of tl, which must hold a data directory
// (ImportDataDir, or a branch of a timeline that does): it reads the
// stored pg_control and checkpoint at tl's last record LSN.
func NewWalIngest(ctx context.Context, tl *repo.Timeline, log zerolog.Logger) (*WalIngest, error) {
	lsn := tl.LastRecordLSN()
	b, err := tl.Get(ctx, key.Control(), lsn)
	if err != nil {
		return nil, fmt.Errorf("wal ingest of timeline %s: read pg_control at %v: %w", tl.ID(), lsn, err)
	}
	cf, err := pgdata.ParseControlFile(b)
	if err != nil {
		return nil, fmt.Errorf("wal ingest of timeline %s: stored pg_control at %v: %w", tl.ID(), lsn, err)
	}
	b, err = tl.Get(ctx, key.Checkpoint(), lsn)
	if err != nil {
		return nil, fmt.Errorf("wal ingest of timeline %s: read the checkpoint at %v: %w", tl.ID(), lsn, err)
	}
	cp, err := pgdata.ParseCheckPoint(b)
	if err != nil {
		return nil, fmt.Errorf("wal ingest of timeline %s: stored checkpoint at %v: %w", tl.ID(), lsn, err)
	}
	return &WalIngest{
		tl:         tl,
		w:          datadir.NewDatadirWriter(tl),
		log:        log.With().Stringer("timeline", tl.ID()).Logger(),
		control:    *cf,
		cp:         cp,
		written:    map[key.Key]bool{},
		relExtends: map[forkRef]uint32{},
		slruExtend: map[slruSegment]uint32{},
	}, nil
}

// SegSize is the WAL segment size of the timeline's cluster, from its
// stored pg_control.
func (w *WalIngest) SegSize() uint64 { return uint64(w.control.XLogSegSize) }

// SystemID is the system identifier of the timeline's cluster, from its
// stored pg_control.
func (w *WalIngest) SystemID() uint64 { return w.control.SystemIdentifier }

// CheckPoint returns the checkpoint as of the last record ingested: the
// latest checkpoint record's, with the counters advanced past every xid,
// OID and multixact the WAL after it has used.
func (w *WalIngest) CheckPoint() pgdata.CheckPoint { return w.cp }

// Ingest applies one record: every value at rec.EndLSN, then the timeline's
// last record LSN becomes rec.EndLSN and its previous record LSN rec.LSN.
// Records must come in WAL order starting at the timeline's last record
// LSN. Nothing of rec is kept: the caller may reuse its buffers.
func (w *WalIngest) Ingest(ctx context.Context, rec *pgdata.Record) error {
	if w.err != nil {
		return w.err
	}
	last, prev := w.tl.LastRecordLSN(), w.tl.PrevRecordLSN()
	switch {
	case rec.LSN < last || rec.EndLSN <= rec.LSN:
		return fmt.Errorf("ingest record at %v-%v: the timeline's last record ends at %v: %w", rec.LSN, rec.EndLSN, last, ErrIngestOrder)
	case prev != 0 && rec.Header.Prev != prev:
		return fmt.Errorf("ingest record at %v: its xl_prev is %v, but the previous record is at %v: %w", rec.LSN, rec.Header.Prev, prev, ErrIngestOrder)
	}
	d, err := decodeRecord(rec)
	if err != nil {
		return fmt.Errorf("ingest record at %v: %w", rec.LSN, err)
	}
	clear(w.written)
	clear(w.relExtends)
	clear(w.slruExtend)
	w.w.Begin(rec.EndLSN)
	cp := w.cp
	if err := w.apply(ctx, d, &cp); err != nil {
		w.err = fmt.Errorf("ingest record at %v (%v, info %#02x), timeline %s must be reopened: %w",
			rec.LSN, rec.Rmgr(), rec.Header.Info, w.tl.ID(), err)
		return w.err
	}
	if err := w.w.Commit(rec.LSN); err != nil {
		w.err = fmt.Errorf("ingest record at %v, timeline %s must be reopened: %w", rec.LSN, w.tl.ID(), err)
		return w.err
	}
	w.cp = cp
	return nil
}

// decoded is a record with every part the ingest needs parsed, so that a
// malformed record is found before anything is written.
type decoded struct {
	rec *pgdata.Record
	// ops are the changes redo applies in Go (walredo.OpsForRecord).
	ops []walredo.PageOp

	// At most one of these, by record type.
	smgrCreate    *pgdata.SmgrCreate
	smgrTruncate  *pgdata.SmgrTruncate
	dbCreate      *pgdata.DBaseCreate
	dbDrop        *pgdata.DBaseDrop
	tblspcCreate  *pgdata.TblspcCreate
	tblspcDrop    *uint32 // the tablespace's OID
	relMap        *pgdata.RelMapUpdate
	xactEnd       *pgdata.XactEnd
	prepare       *pgdata.XactPrepare
	assignment    *pgdata.XactAssignment
	clogTruncate  *pgdata.ClogTruncate
	multiCreate   *pgdata.MultiXactCreate
	multiTruncate *pgdata.MultiXactTruncate
	checkpoint    *pgdata.CheckPoint
	shutdown      bool // checkpoint is a shutdown checkpoint
	nextOID       *uint32
	params        *pgdata.ParameterChange
	running       *pgdata.RunningXacts
	originSet     *pgdata.ReplOriginSet
	originDrop    *uint16
}

// decodeRecord parses what the ingest needs of rec.
func decodeRecord(rec *pgdata.Record) (*decoded, error) {
	if h := ClassifyRecord(rec.Rmgr(), rec.Header.Info); h.Handling == Unsupported {
		return nil, fmt.Errorf("%v/%s record: %s: %w", rec.Rmgr(), rec.TypeName(), h.How, ErrUnsupportedRecord)
	}
	d := &decoded{rec: rec}
	var err error
	if d.ops, err = walredo.OpsForRecord(rec); err != nil {
		return nil, err
	}
	if rec.Rmgr() == pgdata.RmgrStorage {
		// The visibility-map truncation OpsForRecord reports applies only
		// if the map page exists: truncateRelation decides.
		d.ops = nil
	}
	for i := range rec.Blocks {
		if b := &rec.Blocks[i]; b.Rel.RelNode == 0 || !b.Fork.Valid() || b.Block == pgdata.InvalidBlockNumber {
			return nil, fmt.Errorf("block reference %d: invalid block %v fork %d blk %d", b.ID, b.Rel, b.Fork, b.Block)
		}
	}
	info := rec.RmgrInfo()
	switch rec.Rmgr() {
	case pgdata.RmgrXLOG:
		switch info {
		case pgdata.XLogCheckpointShutdown, pgdata.XLogCheckpointOnline:
			cp, shutdown, err := pgdata.ParseCheckpointRecord(rec)
			d.checkpoint, d.shutdown = &cp, shutdown
			return d, err
		case pgdata.XLogNextOID:
			oid, err := pgdata.ParseNextOID(rec)
			d.nextOID = &oid
			return d, err
		case pgdata.XLogParameterChange:
			p, err := pgdata.ParseParameterChange(rec)
			d.params = &p
			return d, err
		}
	case pgdata.RmgrStorage:
		switch info {
		case pgdata.XLogSmgrCreate:
			c, err := pgdata.ParseSmgrCreate(rec)
			d.smgrCreate = &c
			return d, err
		case pgdata.XLogSmgrTruncate:
			t, err := pgdata.ParseSmgrTruncate(rec)
			d.smgrTruncate = &t
			return d, err
		}
	case pgdata.RmgrDatabase:
		switch info {
		case pgdata.XLogDBaseCreateFileCopy, pgdata.XLogDBaseCreateWALLog:
			c, err := pgdata.ParseDBaseCreate(rec)
			if err == nil && (c.TsID == pgdata.GlobalTablespaceOID || c.FileCopy && c.SrcTsID == pgdata.GlobalTablespaceOID) {
				err = fmt.Errorf("database %d created in or from pg_global", c.DbID)
			}
			d.dbCreate = &c
			return d, err
		case pgdata.XLogDBaseDrop:
			drop, err := pgdata.ParseDBaseDrop(rec)
			d.dbDrop = &drop
			return d, err
		}
	case pgdata.RmgrTablespace:
		switch info {
		case pgdata.XLogTblspcCreate:
			c, err := pgdata.ParseTblspcCreate(rec)
			d.tblspcCreate = &c
			return d, err
		case pgdata.XLogTblspcDrop:
			ts, err := pgdata.ParseTblspcDrop(rec)
			d.tblspcDrop = &ts
			return d, err
		}
	case pgdata.RmgrRelMap:
		u, err := pgdata.ParseRelMapUpdate(rec)
		d.relMap = &u
		return d, err
	case pgdata.RmgrTransaction:
		switch rec.Header.Info & pgdata.XLogXactOpMask {
		case pgdata.XLogXactCommit, pgdata.XLogXactCommitPrepared, pgdata.XLogXactAbort, pgdata.XLogXactAbortPrepared:
			d.xactEnd, err = pgdata.ParseXactEnd(rec)
			return d, err
		case pgdata.XLogXactPrepare:
			d.prepare, err = pgdata.ParseXactPrepare(rec)
			if err == nil && (d.prepare.Xid == 0 || d.prepare.Xid != rec.Header.Xid) {
				err = fmt.Errorf("prepare record of xid %d holds the state of xid %d", rec.Header.Xid, d.prepare.Xid)
			}
			return d, err
		case pgdata.XLogXactAssignment:
			a, err := pgdata.ParseXactAssignment(rec)
			d.assignment = &a
			return d, err
		}
	case pgdata.RmgrCLOG:
		if info == pgdata.XLogClogTruncate {
			t, err := pgdata.ParseClogTruncate(rec)
			d.clogTruncate = &t
			return d, err
		}
	case pgdata.RmgrMultiXact:
		switch info {
		case pgdata.XLogMultiXactCreateID:
			d.multiCreate, err = pgdata.ParseMultiXactCreate(rec)
			return d, err
		case pgdata.XLogMultiXactTruncateID:
			t, err := pgdata.ParseMultiXactTruncate(rec)
			d.multiTruncate = &t
			return d, err
		}
	case pgdata.RmgrReplicationOrigin:
		switch info {
		case pgdata.XLogReplOriginSet:
			set, err := pgdata.ParseReplOriginSet(rec)
			d.originSet = &set
			return d, err
		case pgdata.XLogReplOriginDrop:
			origin, err := pgdata.ParseReplOriginDrop(rec)
			d.originDrop = &origin
			return d, err
		}
	case pgdata.RmgrStandby:
		if info == pgdata.XLogRunningXacts {
			r, err := pgdata.ParseRunningXacts(rec)
			d.running = &r
			return d, err
		}
	}
	return d, nil
}

// apply writes everything rec changes into the open record, and advances
// cp.
func (w *WalIngest) apply(ctx context.Context, d *decoded, cp *pgdata.CheckPoint) error {
	if err := w.putBlocks(d.rec); err != nil {
		return err
	}
	var err error
	switch {
	case d.smgrCreate != nil:
		err = w.w.CreateRelation(ctx, d.smgrCreate.Rel, d.smgrCreate.Fork)
	case d.smgrTruncate != nil:
		err = w.truncateRelation(ctx, d.smgrTruncate)
	case d.dbCreate != nil:
		err = w.createDatabase(ctx, d.dbCreate)
	case d.dbDrop != nil:
		err = w.dropDatabase(ctx, d.dbDrop)
	case d.tblspcCreate != nil:
		err = w.w.CreateTablespace(ctx, datadir.Tablespace{OID: d.tblspcCreate.TsID, Location: d.tblspcCreate.Location})
	case d.tblspcDrop != nil:
		err = w.w.DropTablespace(ctx, *d.tblspcDrop)
	case d.relMap != nil:
		err = w.putRelMap(ctx, d.relMap)
	case d.xactEnd != nil:
		err = w.endTransaction(ctx, d.xactEnd)
	case d.prepare != nil:
		err = w.w.PutTwoPhaseFile(ctx, d.prepare.Xid, twoPhaseFile(d.rec.MainData))
	case d.clogTruncate != nil:
		err = w.truncateSLRU(ctx, key.Clog, d.clogTruncate.PageNo, clogPagePrecedes)
	case d.multiTruncate != nil:
		err = w.truncateMultiXacts(ctx, d.multiTruncate)
	case d.params != nil:
		d.params.Apply(&w.control)
		err = w.w.PutControlFile(w.control.Encode())
	}
	if err != nil {
		return err
	}
	if err := w.trackReplOrigins(ctx, d); err != nil {
		return err
	}
	if err := w.putOps(ctx, d.rec, d.ops); err != nil {
		return err
	}
	if err := w.extend(ctx); err != nil {
		return err
	}
	before := *cp
	advanceCheckPoint(cp, d)
	if *cp != before {
		return w.w.PutCheckpoint(cp)
	}
	return nil
}
