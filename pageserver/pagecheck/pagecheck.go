// Package pagecheck is the page oracle the tests share: it compares what
// the page server holds for a timeline at one LSN with the data directory
// of the PostgreSQL server that wrote that WAL, stopped cleanly at that
// LSN. Every database, relation map, relation fork and size, every page
// (after rm_mask, the masking wal_consistency_checking does), the SLRU
// segments, pg_twophase and the checkpoint's counters must agree; what a
// data directory holds that WAL never says is counted under a reason
// (the constants below) and checked as far as that reason allows.
//
// It is test support: it reports through testing.TB and must never be
// imported by non-test code.
package pagecheck

import (
	"bytes"
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/zenithdb/zenith/pageserver/datadir"
	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/walredo"
)

// relFork is one fork of a relation.
type relFork struct {
	rel  pgdata.RelFileNode
	fork pgdata.ForkNumber
}

// What a data directory holds that WAL does not say, by reason. A page or
// fork counted under one of these is not compared byte for byte, or only
// after the check the reason describes.
const (
	exFSM      = "free-space map fork: never WAL-logged (freespace.c), PostgreSQL rebuilds it"
	exVMExtend = "visibility-map page never WAL-logged: vm_extend writes initialized empty map pages, " +
		"no bit of this one was set since"
	exZeroTail = "all-zero page at the end of a fork, never WAL-logged: relation extension writes zero pages " +
		"(RelationAddExtraBlocks, _hash_alloc_buckets) and the first change to one initializes it"
	exVMCopied = "visibility-map page of a database created with STRATEGY WAL_LOG, with fewer bits than on disk: " +
		"log_newpage_buffer(page_std) leaves the bitmap in the image's hole; checked: header equal, our bits a subset"
	exSPGistMeta = "SP-GiST metapage equal except its lastUsedPages cache, which SpGistUpdateMetaPage writes without WAL"
	exUnlogged   = "fork of an unlogged relation (it has an init fork): never WAL-logged; a compute starts with it reset " +
		"from the init fork (ResetUnloggedRelations), as after a crash; the init fork itself is compared"
	exSequence = "sequence page equal except last_value/log_cnt: nextval WAL-logs the state SEQ_LOG_VALS ahead; " +
		"checked: logged last_value = page last_value + log_cnt * increment, logged log_cnt = 0"
)

// Oracle compares a timeline at its last LSN with a stopped data
// directory.
type Oracle struct {
	t      testing.TB
	ctx    context.Context
	m      *walredo.Manager
	tenant string
	rd     *datadir.DatadirReader
	dir    string
	cat    *Catalogs
	mu     sync.Mutex
	tally  map[string]int
}

// New returns an oracle comparing what rd reads (a timeline at one LSN,
// its pages rebuilt through m for tenant) with the stopped data directory
// dir; cat is what the catalogs said before the server stopped.
func New(ctx context.Context, t testing.TB, m *walredo.Manager, tenant string, rd *datadir.DatadirReader, dir string, cat *Catalogs) *Oracle {
	return &Oracle{t: t, ctx: ctx, m: m, tenant: tenant, rd: rd, dir: dir, cat: cat, tally: map[string]int{}}
}

// Report logs how many values were compared, by outcome.
func (o *Oracle) Report(what string) {
	o.t.Helper()
	Report(o.t, what, o.tally)
}

// Reader is the timeline reader the oracle compares.
func (o *Oracle) Reader() *datadir.DatadirReader { return o.rd }

func (o *Oracle) count(what string) {
	o.mu.Lock()
	o.tally[what]++
	o.mu.Unlock()
}

func (o *Oracle) file(p string) []byte {
	o.t.Helper()
	b, err := os.ReadFile(filepath.Join(o.dir, filepath.FromSlash(p)))
	if err != nil {
		o.t.Fatal(err)
	}
	return b
}

// CheckDatabases compares the tablespaces, the databases' directories in
// every tablespace, their PG_VERSION files, relation maps, relations,
// fork sizes and pages.
func (o *Oracle) CheckDatabases() {
	t := o.t
	dirs := map[datadir.Database]string{{SpcNode: pgdata.GlobalTablespaceOID}: "global"}
	o.databaseDirs(dirs, pgdata.DefaultTablespaceOID, "base")
	o.checkTablespaces(dirs)
	var want datadir.DBDir
	for db := range dirs {
		want = append(want, db)
	}
	slices.SortFunc(want, func(a, b datadir.Database) int {
		return cmp.Or(cmp.Compare(a.SpcNode, b.SpcNode), cmp.Compare(a.DbNode, b.DbNode))
	})
	got, err := o.rd.Databases(o.ctx)
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("databases = %v, %v; want %v", got, err, want)
	}
	aux, err := o.rd.AuxFiles(o.ctx)
	if err != nil {
		t.Fatal(err)
	}
	for db, rel := range dirs {
		_, statErr := os.Stat(filepath.Join(o.dir, rel, "pg_filenode.map"))
		relMap, found, err := o.rd.RelMap(o.ctx, db)
		switch {
		case err != nil:
			t.Fatal(err)
		case found != (statErr == nil):
			t.Errorf("%s/pg_filenode.map: stored %v, on disk %v", rel, found, statErr == nil)
		case found && !bytes.Equal(relMap, o.file(rel+"/pg_filenode.map")):
			t.Errorf("%s/pg_filenode.map: stored %d bytes, differs from the file", rel, len(relMap))
		}
		if db.DbNode != 0 {
			_, statErr := os.Stat(filepath.Join(o.dir, rel, "PG_VERSION"))
			if _, found := slices.BinarySearch(aux, rel+"/PG_VERSION"); found != (statErr == nil) {
				t.Errorf("%s/PG_VERSION: among the auxiliary files %v, on disk %v", rel, found, statErr == nil)
			}
		}
		o.checkRelations(db, rel)
	}
	inDir := map[string]bool{}
	for _, rel := range dirs {
		inDir[rel] = true
	}
	for _, p := range aux {
		if (strings.HasPrefix(p, "base/") || strings.HasPrefix(p, "pg_tblspc/")) && !inDir[path.Dir(p)] {
			t.Errorf("auxiliary file %s belongs to no database", p)
		}
	}
}

// databaseDirs adds the database directories under rel (base/ or a
// tablespace's version directory) to dirs.
func (o *Oracle) databaseDirs(dirs map[datadir.Database]string, spc uint32, rel string) {
	entries, err := os.ReadDir(filepath.Join(o.dir, rel))
	if err != nil {
		o.t.Fatal(err)
	}
	for _, e := range entries {
		oid, err := strconv.ParseUint(e.Name(), 10, 32)
		if err != nil {
			o.t.Fatalf("%s/%s: %v", rel, e.Name(), err)
		}
		dirs[datadir.Database{SpcNode: spc, DbNode: uint32(oid)}] = rel + "/" + e.Name()
	}
}

// checkTablespaces compares the tablespace list with pg_tblspc, where each
// entry is a symbolic link to the tablespace's location or, in place, a
// directory, and adds the database directories in each to dirs.
func (o *Oracle) checkTablespaces(dirs map[datadir.Database]string) {
	t := o.t
	entries, err := os.ReadDir(filepath.Join(o.dir, "pg_tblspc"))
	if err != nil {
		t.Fatal(err)
	}
	var want datadir.TablespaceDir
	for _, e := range entries {
		oid, err := strconv.ParseUint(e.Name(), 10, 32)
		if err != nil {
			t.Fatalf("pg_tblspc/%s: %v", e.Name(), err)
		}
		ts := datadir.Tablespace{OID: uint32(oid)}
		if e.Type()&os.ModeSymlink != 0 {
			if ts.Location, err = os.Readlink(filepath.Join(o.dir, "pg_tblspc", e.Name())); err != nil {
				t.Fatal(err)
			}
		}
		want = append(want, ts)
		o.databaseDirs(dirs, ts.OID, ts.VersionDir())
	}
	slices.SortFunc(want, func(a, b datadir.Tablespace) int { return cmp.Compare(a.OID, b.OID) })
	got, err := o.rd.Tablespaces(o.ctx)
	if err != nil || !slices.Equal(got, want) {
		t.Errorf("tablespaces = %v, %v; want %v", got, err, want)
	}
}

// diskFork is a relation fork in the data directory: its pages.
type diskFork struct {
	rel   pgdata.RelFileNode
	fork  pgdata.ForkNumber
	pages []byte
}

func (o *Oracle) checkRelations(db datadir.Database, rel string) {
	t := o.t
	entries, err := os.ReadDir(filepath.Join(o.dir, rel))
	if err != nil {
		t.Fatal(err)
	}
	disk := map[relFork]*diskFork{}
	for _, e := range entries {
		r, fork, seg, err := pgdata.ParseRelationPath(rel + "/" + e.Name())
		if err != nil {
			continue // PG_VERSION, pg_filenode.map, pg_internal.init
		}
		if seg != 0 {
			t.Fatalf("%s/%s: the test's relations stay below 1 GiB", rel, e.Name())
		}
		disk[relFork{r, fork}] = &diskFork{rel: r, fork: fork, pages: o.file(rel + "/" + e.Name())}
	}
	rels, err := o.rd.Relations(o.ctx, db)
	if err != nil {
		t.Fatal(err)
	}
	ours := map[relFork]bool{}
	for _, e := range rels {
		for f := range pgdata.MaxFork + 1 {
			if e.Forks.Has(f) {
				ours[relFork{pgdata.RelFileNode{SpcNode: db.SpcNode, DbNode: db.DbNode, RelNode: e.RelNode}, f}] = true
			}
		}
	}
	for rf := range ours {
		if disk[rf] == nil && rf.fork != pgdata.ForkFSM {
			t.Errorf("%s: relation %d fork %v is stored but has no file", rel, rf.rel.RelNode, rf.fork)
		}
	}
	var jobs []func()
	for rf, d := range disk {
		if rf.fork == pgdata.ForkFSM {
			o.count(exFSM)
			continue
		}
		if rf.fork != pgdata.ForkInit && disk[relFork{rf.rel, pgdata.ForkInit}] != nil {
			o.count(exUnlogged)
			continue
		}
		blocks := uint32(len(d.pages) / pgdata.BlockSize)
		var size uint32
		if ours[rf] {
			if size, err = o.rd.RelSize(o.ctx, rf.rel, rf.fork); err != nil {
				t.Fatal(err)
			}
		}
		if size > blocks {
			t.Errorf("%s/%d fork %v: stored size %d blocks, the file has %d", rel, rf.rel.RelNode, rf.fork, size, blocks)
			continue
		}
		for blk := size; blk < blocks; blk++ {
			page := d.pages[blk*pgdata.BlockSize : (blk+1)*pgdata.BlockSize]
			switch {
			case allZeros(page):
				o.count(exZeroTail)
			case rf.fork == pgdata.ForkVM && emptyMapPage(page):
				o.count(exVMExtend)
			default:
				t.Errorf("%s/%d fork %v block %d: past the stored size %d, but not a page WAL never saw", rel, rf.rel.RelNode, rf.fork, blk, size)
			}
		}
		for blk := range size {
			jobs = append(jobs, func() { o.checkPage(db, d, blk) })
		}
	}
	work := make(chan func())
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range work {
				j()
			}
		}()
	}
	for _, j := range jobs {
		work <- j
	}
	close(work)
	wg.Wait()
}

func allZeros(p []byte) bool { return bytes.Count(p, []byte{0}) == len(p) }

// emptyMapPage reports whether p is a page as PageInit(p, BLCKSZ, 0)
// makes it: what vm_extend writes.
func emptyMapPage(p []byte) bool {
	want := make([]byte, pgdata.BlockSize)
	binary.LittleEndian.PutUint16(want[12:], 24)                 // pd_lower
	binary.LittleEndian.PutUint16(want[14:], pgdata.BlockSize)   // pd_upper
	binary.LittleEndian.PutUint16(want[16:], pgdata.BlockSize)   // pd_special
	binary.LittleEndian.PutUint16(want[18:], pgdata.BlockSize|4) // pd_pagesize_version
	return bytes.Equal(p, want)
}

// checkPage compares one stored page with the file's.
func (o *Oracle) checkPage(db datadir.Database, d *diskFork, blk uint32) {
	t := o.t
	want := d.pages[blk*pgdata.BlockSize : (blk+1)*pgdata.BlockSize]
	got, err := o.rd.RelPage(o.ctx, d.rel, d.fork, blk)
	if err != nil {
		t.Errorf("%v fork %v block %d: %v", d.rel, d.fork, blk, err)
		return
	}
	where := fmt.Sprintf("%v fork %v block %d", d.rel, d.fork, blk)
	if bytes.Equal(got, want) {
		o.count("equal " + d.fork.String() + " page")
		return
	}
	if d.fork == pgdata.ForkVM {
		switch {
		case allZeros(got) && emptyMapPage(want):
			o.count(exVMExtend)
		case o.cat.WALLog[db.DbNode] && bitsSubset(got, want):
			o.count(exVMCopied)
		default:
			t.Errorf("%s: visibility-map page differs at byte %d", where, firstDiff(got, want))
		}
		return
	}
	ri, ok := o.cat.Rels[[2]uint32{db.DbNode, d.rel.RelNode}]
	if !ok {
		t.Errorf("%s: differs at byte %d, and no catalog says what the relation is", where, firstDiff(got, want))
		return
	}
	rmgr, ok := rmgrOfRelation(ri)
	if !ok {
		t.Errorf("%s (%s, %s): differs at byte %d, no rm_mask known for it", where, ri.Name, ri.AM, firstDiff(got, want))
		return
	}
	gotM, err1 := o.m.Mask(o.ctx, o.tenant, rmgr, blk, got)
	wantM, err2 := o.m.Mask(o.ctx, o.tenant, rmgr, blk, want)
	if err1 != nil || err2 != nil {
		t.Errorf("%s: mask: %v, %v", where, err1, err2)
		return
	}
	what := "equal after masking, " + rmgr.String()
	switch {
	case bytes.Equal(gotM, wantM):
	case rmgr == pgdata.RmgrSequence:
		if err := sequenceLoggedAhead(gotM, wantM, ri.Increment); err != nil {
			t.Errorf("%s: sequence %s: %v", where, ri.Name, err)
			return
		}
		what = exSequence
	case rmgr == pgdata.RmgrSPGist && blk == 0:
		// SpGistMetaPageData.lastUsedPages: after the page header and
		// the magic number, 8 pairs of (blkno, freeSpace).
		const from, to = 24 + 4, 24 + 4 + 8*8
		copy(wantM[from:to], gotM[from:to])
		what = exSPGistMeta
	}
	if !bytes.Equal(gotM, wantM) {
		t.Errorf("%s (%s %s): differs after masking at byte %d", where, ri.AM, ri.Name, firstDiff(gotM, wantM))
		return
	}
	o.count(what)
}

// bitsSubset reports whether page got has the header of want and no bit
// that want lacks.
func bitsSubset(got, want []byte) bool {
	if !bytes.Equal(got[:24], want[:24]) {
		return false
	}
	for i := 24; i < len(got); i++ {
		if got[i]&^want[i] != 0 {
			return false
		}
	}
	return true
}

func firstDiff(a, b []byte) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	return min(len(a), len(b))
}

// rmgrOfRelation is the resource manager whose rm_mask applies to a
// relation's pages.
func rmgrOfRelation(ri Relation) (pgdata.RmgrID, bool) {
	if ri.Kind == "S" {
		return pgdata.RmgrSequence, true
	}
	rmgr, ok := map[string]pgdata.RmgrID{
		"heap": pgdata.RmgrHeap, "btree": pgdata.RmgrBtree, "hash": pgdata.RmgrHash, "gin": pgdata.RmgrGin,
		"gist": pgdata.RmgrGist, "spgist": pgdata.RmgrSPGist, "brin": pgdata.RmgrBRIN,
	}[ri.AM]
	return rmgr, ok
}

// sequenceLoggedAhead checks that a sequence page rebuilt from WAL (got)
// holds the state nextval logged ahead of the page's (want), and makes
// want's last_value and log_cnt got's so that the rest can be compared.
func sequenceLoggedAhead(got, want []byte, increment int64) error {
	g, err := sequenceTuple(got)
	if err != nil {
		return err
	}
	w, err := sequenceTuple(want)
	if err != nil {
		return err
	}
	le := binary.LittleEndian
	gotLast, gotCnt := int64(le.Uint64(got[g:])), int64(le.Uint64(got[g+8:]))
	wantLast, wantCnt := int64(le.Uint64(want[w:])), int64(le.Uint64(want[w+8:]))
	if gotCnt != 0 || gotLast != wantLast+wantCnt*increment {
		return fmt.Errorf("logged last_value %d log_cnt %d; page last_value %d log_cnt %d, increment %d", gotLast, gotCnt, wantLast, wantCnt, increment)
	}
	copy(want[w:w+16], got[g:g+16])
	return nil
}

// sequenceTuple returns the offset of a sequence page's data
// (FormData_pg_sequence_data: last_value, log_cnt, is_called), in its only
// tuple.
func sequenceTuple(p []byte) (int, error) {
	lp := binary.LittleEndian.Uint32(p[24:]) // line pointer 1
	off := int(lp & 0x7FFF)
	if off < 24 || off+24 > len(p) {
		return 0, fmt.Errorf("line pointer 1 points at %d", off)
	}
	data := off + int(p[off+22]) // t_hoff
	if data+17 > len(p) {
		return 0, fmt.Errorf("tuple data at %d", data)
	}
	return data, nil
}

// CheckSLRUs compares pg_xact and pg_multixact: segments, sizes, pages.
func (o *Oracle) CheckSLRUs() {
	t := o.t
	for _, s := range []key.SLRU{key.Clog, key.MultiXactOffsets, key.MultiXactMembers} {
		entries, err := os.ReadDir(filepath.Join(o.dir, filepath.FromSlash(s.String())))
		if err != nil {
			t.Fatal(err)
		}
		var want datadir.SLRUDir
		for _, e := range entries {
			seg, err := datadir.ParseSLRUSegmentName(e.Name())
			if err != nil {
				t.Fatal(err)
			}
			want = append(want, seg)
			disk := o.file(path.Join(s.String(), e.Name()))
			pages := uint32(len(disk) / pgdata.BlockSize)
			if got, err := o.rd.SLRUSegmentSize(o.ctx, s, seg); err != nil || got != pages {
				t.Errorf("%s/%s: stored size %d pages (%v), the file has %d", s, e.Name(), got, err, pages)
			}
			for blk := range pages {
				got, err := o.rd.SLRUPage(o.ctx, s, seg, blk)
				if err != nil {
					t.Fatal(err)
				}
				if w := disk[blk*pgdata.BlockSize : (blk+1)*pgdata.BlockSize]; !bytes.Equal(got, w) {
					t.Errorf("%s/%s page %d differs at byte %d", s, e.Name(), blk, firstDiff(got, w))
					continue
				}
				o.count("equal " + s.String() + " page")
			}
		}
		got, err := o.rd.SLRUSegments(o.ctx, s)
		if err != nil || !slices.Equal(got, want) {
			t.Errorf("%s segments = %v, %v; want %v", s, got, err, want)
		}
	}
}

// CheckTwoPhase compares pg_twophase, which must hold want files (the
// transactions the test left prepared).
func (o *Oracle) CheckTwoPhase(want int) {
	t := o.t
	entries, err := os.ReadDir(filepath.Join(o.dir, "pg_twophase"))
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != want {
		t.Errorf("pg_twophase has %d files, want %d (the transactions left prepared)", len(entries), want)
	}
	var files datadir.TwoPhaseDir
	for _, e := range entries {
		xid, err := datadir.ParseTwoPhaseName(e.Name())
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, xid)
		got, err := o.rd.TwoPhaseFile(o.ctx, xid)
		if w := o.file("pg_twophase/" + e.Name()); err != nil || !bytes.Equal(got, w) {
			t.Errorf("pg_twophase/%s: stored %d bytes (%v), the file has %d", e.Name(), len(got), err, len(w))
			continue
		}
		o.count("equal pg_twophase file")
	}
	got, err := o.rd.TwoPhaseFiles(o.ctx)
	if err != nil || !slices.Equal(got, files) {
		t.Errorf("prepared transactions = %v, %v; want %v", got, err, files)
	}
}

// CheckCheckpoint compares a stored checkpoint with pg_control's: the
// counters may be ahead, the horizons must be the same.
func (o *Oracle) CheckCheckpoint(when string, got pgdata.CheckPoint, cf *pgdata.ControlFile) {
	want := cf.CheckPointCopy
	o.t.Logf("stored checkpoint %s: next xid %s oid %d multi %d offset %d, oldest xid %d (db %d) multi %d (db %d)",
		when, got.NextXidString(), got.NextOid, got.NextMulti, got.NextMultiOffset, got.OldestXid, got.OldestXidDB, got.OldestMulti, got.OldestMultiDB)
	switch {
	case got.NextXid < want.NextXid, got.NextOid < want.NextOid, pgdata.MultiXactIDPrecedes(got.NextMulti, want.NextMulti),
		pgdata.MultiXactOffsetPrecedes(got.NextMultiOffset, want.NextMultiOffset):
		o.t.Errorf("stored checkpoint %s: counters %+v are behind pg_control's %+v", when, got, want)
	case got.OldestXid != want.OldestXid, got.OldestXidDB != want.OldestXidDB,
		got.OldestMulti != want.OldestMulti, got.OldestMultiDB != want.OldestMultiDB:
		o.t.Errorf("stored checkpoint %s: horizons %+v differ from pg_control's %+v", when, got, want)
	}
}
