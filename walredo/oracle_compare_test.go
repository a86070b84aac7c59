package walredo

import (
	"bytes"
	"context"
	"encoding/binary"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"

	"github.com/zenithdb/zenith/repo/pgdata"
)

// The pages PostgreSQL itself never WAL-logs, by reason. A page counted
// under one of these is not compared, except sequences, which are compared
// after the check the reason describes.
const (
	exFSM      = "free space map: never WAL-logged (freespace.c), PostgreSQL rebuilds it"
	exUnlogged = "unlogged relation's main/fsm/vm fork: only its init fork is WAL-logged"
	exZeroPage = "all-zero page with no WAL history: relation extension writes zero pages " +
		"without WAL (ReadBuffer P_NEW, RelationAddExtraBlocks, _hash_alloc_buckets); the first change to one initializes it"
	exVMExtend = "empty visibility-map page with no WAL history: vm_extend writes initialized map pages " +
		"without WAL, and no bit of this one was set since"
	exVMCopied = "visibility-map page whose bits were set when CREATE DATABASE STRATEGY WAL_LOG copied it: " +
		"RelationCopyStorageUsingBuffer logs it with log_newpage_buffer(page_std=true), whose hole (pd_lower to pd_upper) " +
		"is the whole bitmap, so those bits never reach WAL (replay clears them, which is safe); checked: equal but for them"
	exSPGistMeta = "SP-GiST metapage equal except its lastUsedPages cache, which SpGistUpdateMetaPage writes without WAL"
	exSequence   = "sequence page equal except last_value/log_cnt: nextval WAL-logs the state SEQ_LOG_VALS " +
		"fetches ahead and the page the current one; checked: logged last_value = page last_value + log_cnt * increment, logged log_cnt = 0"
)

const relSegBlocks = 1 << 30 / pgdata.BlockSize // RELSEG_SIZE

// outcome is what became of one page: equal, an exception, or a failure.
type outcome struct {
	tag     BufferTag
	what    string // "equal <rmgr>", an exception, or "" for a failure
	failure string
	// replayed counts the WAL records replayed to rebuild the page, by
	// type ("Heap/INSERT"), and the Go-applied operations ("op VMClear").
	replayed map[string]int
}

type pageJob struct {
	tag  BufferTag
	page []byte
	rel  relation
	ok   bool // rel is known
}

// checkRelations rebuilds every block of every relation file of the
// oracle database and compares it with the file.
func checkRelations(ctx context.Context, t *testing.T, m *Manager, dataDir string, dbOID uint32, rels map[uint32]relation, h *history) {
	jobs, files := relationPages(t, dataDir, dbOID, rels)
	tally, replayed := checkPages(ctx, t, m, jobs, files, h)
	// The oracle must have seen every kind of page and of change the
	// workload makes, or it proves little.
	for _, want := range []string{"Heap", "Btree", "Hash", "Gin", "Gist", "SPGist", "BRIN", "Sequence", "visibility map"} {
		if tally["equal "+want] == 0 {
			t.Errorf("no %s page was compared equal", want)
		}
	}
	for _, want := range replayedTypes {
		if replayed[want] == 0 {
			t.Errorf("no %s was replayed into a page found equal", want)
		}
	}
}

// relationPages reads every page of every relation file of database dbOID
// in dataDir; it returns them and the number of files.
func relationPages(t *testing.T, dataDir string, dbOID uint32, rels map[uint32]relation) ([]pageJob, int) {
	dbDir := filepath.Join("base", strconv.FormatUint(uint64(dbOID), 10))
	entries, err := os.ReadDir(filepath.Join(dataDir, dbDir))
	if err != nil {
		t.Fatal(err)
	}
	var jobs []pageJob
	for _, e := range entries {
		switch e.Name() {
		case "PG_VERSION", "pg_filenode.map", "pg_internal.init":
			continue
		}
		rel, fork, seg, err := pgdata.ParseRelationPath(filepath.Join(dbDir, e.Name()))
		if err != nil {
			t.Errorf("unexpected file in the database directory: %v", err)
			continue
		}
		data, err := os.ReadFile(filepath.Join(dataDir, dbDir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if len(data)%pgdata.BlockSize != 0 {
			t.Errorf("%s: %d bytes, not whole pages", e.Name(), len(data))
		}
		info, known := rels[rel.RelNode]
		for i := 0; i+pgdata.BlockSize <= len(data); i += pgdata.BlockSize {
			tag := BufferTag{Rel: rel, Fork: fork, Block: seg*relSegBlocks + uint32(i/pgdata.BlockSize)}
			jobs = append(jobs, pageJob{tag: tag, page: data[i : i+pgdata.BlockSize], rel: info, ok: known})
		}
	}
	return jobs, len(entries)
}

// checkPages rebuilds and compares every page of jobs, and reports the
// tallies of what became of them; it returns the pages by outcome and the
// records and operations replayed into pages found equal, by type.
func checkPages(ctx context.Context, t *testing.T, m *Manager, jobs []pageJob, files int, h *history) (tally, replayed map[string]int) {
	results := make([]outcome, len(jobs))
	var wg sync.WaitGroup
	next := make(chan int)
	for w := 0; w < 4; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range next {
				results[i] = checkPage(ctx, m, jobs[i], h)
			}
		}()
	}
	for i := range jobs {
		next <- i
	}
	close(next)
	wg.Wait()

	tally, replayed = map[string]int{}, map[string]int{}
	var failures []outcome
	for _, o := range results {
		if o.failure != "" {
			failures = append(failures, o)
			continue
		}
		tally[o.what]++
		for k, n := range o.replayed {
			replayed[k] += n
		}
	}
	report(t, fmt.Sprintf("%d blocks of %d relation files", len(jobs), files), tally)
	report(t, "records and operations replayed into pages found equal", replayed)
	for i, f := range failures {
		if i == 100 {
			t.Errorf("... and %d more failures", len(failures)-i)
			break
		}
		t.Errorf("%v: %s", f.tag, f.failure)
	}
	return tally, replayed
}

// replayedTypes are the records and operations the mixed workload is
// known to produce and the oracle must have replayed.
var replayedTypes = []string{
	"Heap/INSERT", "Heap/INSERT+INIT", "Heap/UPDATE", "Heap/HOT_UPDATE", "Heap/DELETE",
	"Heap/LOCK", "Heap/INPLACE", "Heap/HEAP_CONFIRM",
	"Heap2/MULTI_INSERT", "Heap2/MULTI_INSERT+INIT", "Heap2/PRUNE", "Heap2/VACUUM",
	"Heap2/FREEZE_PAGE", "Heap2/VISIBLE", "Heap2/LOCK_UPDATED",
	"Btree/INSERT_LEAF", "Btree/INSERT_UPPER", "Btree/SPLIT_L", "Btree/SPLIT_R", "Btree/NEWROOT",
	"Btree/DEDUP", "Btree/VACUUM", "Btree/MARK_PAGE_HALFDEAD", "Btree/UNLINK_PAGE",
	"Hash/INSERT", "Hash/ADD_OVFL_PAGE", "Hash/SPLIT_PAGE", "Hash/SPLIT_COMPLETE", "Hash/SQUEEZE_PAGE", "Hash/DELETE",
	"Gin/INSERT", "Gin/SPLIT", "Gin/CREATE_PTREE", "Gin/INSERT_LISTPAGE", "Gin/DELETE_LISTPAGE", "Gin/VACUUM_PAGE",
	"Gist/PAGE_UPDATE", "Gist/PAGE_SPLIT", "Gist/PAGE_DELETE",
	"SPGist/ADD_LEAF", "SPGist/ADD_NODE", "SPGist/PICKSPLIT", "SPGist/MOVE_LEAFS", "SPGist/VACUUM_LEAF",
	"BRIN/INSERT", "BRIN/SAMEPAGE_UPDATE", "BRIN/REVMAP_EXTEND", "BRIN/DESUMMARIZE",
	"Sequence/LOG", "XLOG/FPI",
	"op value.VMClear", "op value.VMTruncate",
}

func report(t *testing.T, what string, tally map[string]int) {
	keys := make([]string, 0, len(tally))
	for k := range tally {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var b strings.Builder
	fmt.Fprintf(&b, "%s:", what)
	for _, k := range keys {
		fmt.Fprintf(&b, "\n  %6d  %s", tally[k], k)
	}
	t.Log(b.String())
}

// rmgrOf is the resource manager whose rm_mask applies to a relation's
// pages.
func rmgrOf(r relation) (pgdata.RmgrID, bool) {
	if r.kind == "S" {
		return pgdata.RmgrSequence, true
	}
	switch r.am {
	case "heap":
		return pgdata.RmgrHeap, true
	case "btree":
		return pgdata.RmgrBtree, true
	case "hash":
		return pgdata.RmgrHash, true
	case "gin":
		return pgdata.RmgrGin, true
	case "gist":
		return pgdata.RmgrGist, true
	case "spgist":
		return pgdata.RmgrSPGist, true
	case "brin":
		return pgdata.RmgrBRIN, true
	case "bloom":
		return pgdata.RmgrGeneric, true
	}
	return 0, false
}

func checkPage(ctx context.Context, m *Manager, j pageJob, h *history) outcome {
	o := outcome{tag: j.tag}
	fail := func(format string, args ...any) outcome {
		o.failure = fmt.Sprintf(format, args...)
		return o
	}
	switch {
	case j.tag.Fork == pgdata.ForkFSM:
		o.what = exFSM
		return o
	case !j.ok:
		return fail("relfilenode %d is not in pg_class", j.tag.Rel.RelNode)
	case j.rel.persistence == "u" && j.tag.Fork != pgdata.ForkInit:
		o.what = exUnlogged
		return o
	}
	steps := h.blocks[j.tag]
	first := -1
	for i, s := range steps {
		if s.inits {
			first = i
			break
		}
	}
	if first < 0 {
		switch {
		case len(steps) == 0 && allZero(j.page):
			o.what = exZeroPage
			return o
		case len(steps) == 0 && j.tag.Fork == pgdata.ForkVM && emptyPage(j.page):
			o.what = exVMExtend
			return o
		}
		return fail("%s %q: a history of %d steps with no full-page image or will_init record", j.rel.am, j.rel.name, len(steps))
	}
	recs := make([]Record, 0, len(steps)-first)
	for _, s := range steps[first:] {
		recs = append(recs, Record{LSN: s.lsn, WAL: s.wal, Op: s.op})
	}
	got, err := m.Redo(ctx, tenant, j.tag, nil, recs)
	if err != nil {
		return fail("redo of %d records: %v", len(recs), err)
	}
	o.replayed = map[string]int{}
	for _, r := range recs {
		if r.Op != nil {
			o.replayed[fmt.Sprintf("op %T", r.Op)]++
			continue
		}
		h, _ := pgdata.ParseRecordHeader(r.WAL)
		o.replayed[h.Rmid.String()+"/"+pgdata.RecordTypeName(h.Rmid, h.Info)]++
	}
	if j.tag.Fork == pgdata.ForkVM {
		// No rm_mask covers map pages (heap_mask would mask the bits as
		// unused space): they must be equal byte for byte.
		o.what = "equal visibility map"
		if !bytes.Equal(got, j.page) {
			if !vmBitsLostInCopy(j.tag, steps[first], got, j.page) {
				return fail("visibility map page of %q differs at byte %d (%d records)", j.rel.name, firstDiff(got, j.page), len(recs))
			}
			o.what = exVMCopied
		}
		return o
	}
	rmgr, ok := rmgrOf(j.rel)
	if !ok {
		return fail("relation %q has access method %q, kind %s: no rm_mask known", j.rel.name, j.rel.am, j.rel.kind)
	}
	want, err := m.Mask(ctx, tenant, rmgr, j.tag.Block, j.page)
	if err != nil {
		return fail("mask the real page: %v", err)
	}
	gotMasked, err := m.Mask(ctx, tenant, rmgr, j.tag.Block, got)
	if err != nil {
		return fail("mask the rebuilt page: %v", err)
	}
	o.what = "equal " + rmgr.String()
	if rmgr == pgdata.RmgrSequence && !bytes.Equal(gotMasked, want) {
		if err := checkSequenceAhead(gotMasked, want, j.rel.increment); err != nil {
			return fail("sequence %q: %v", j.rel.name, err)
		}
		o.what = exSequence
	}
	if rmgr == pgdata.RmgrSPGist && j.tag.Block == 0 && !bytes.Equal(gotMasked, want) {
		// SpGistMetaPageData.lastUsedPages: 8 (blkno, freeSpace) pairs
		// after the page header and the magic number.
		const from, to = 24 + 4, 24 + 4 + 8*8
		copy(want[from:to], gotMasked[from:to])
		o.what = exSPGistMeta
	}
	if !bytes.Equal(gotMasked, want) {
		return fail("%v page of %q differs after masking at byte %d (%d records from %v to %v)",
			rmgr, j.rel.name, firstDiff(gotMasked, want), len(recs), recs[0].LSN, recs[len(recs)-1].LSN)
	}
	return o
}

// vmBitsLostInCopy reports whether a map page differs from the real one
// only by bits the real one has and whose history begins with an image
// that left the bitmap out (its hole spans pd_lower..pd_upper).
func vmBitsLostInCopy(tag BufferTag, first step, got, want []byte) bool {
	rec, err := pgdata.DecodeRecord(0, first.wal)
	if err != nil {
		return false
	}
	holeCoversMap := false
	for _, b := range rec.Blocks {
		if b.Rel == tag.Rel && b.Fork == tag.Fork && b.Block == tag.Block && b.HasImage &&
			int(b.HoleOffset) <= 24 && int(b.HoleOffset)+int(b.HoleLength) == pgdata.BlockSize {
			holeCoversMap = true
		}
	}
	if !holeCoversMap || !bytes.Equal(got[:24], want[:24]) {
		return false
	}
	for i := 24; i < pgdata.BlockSize; i++ {
		if got[i]&^want[i] != 0 {
			return false
		}
	}
	return true
}

func allZero(p []byte) bool {
	for _, b := range p {
		if b != 0 {
			return false
		}
	}
	return true
}

// emptyPage reports whether p is what PageInit(p, BLCKSZ, 0) makes.
func emptyPage(p []byte) bool {
	return bytes.Equal(p, testPage(0))
}

// checkSequenceAhead checks that the logged sequence state (got, rebuilt
// from WAL) is the page's state (want, from disk) advanced by its log_cnt
// fetches, then copies the logged values into want so that the rest of the
// page can be compared.
func checkSequenceAhead(got, want []byte, increment int64) error {
	g, err := sequenceData(got)
	if err != nil {
		return fmt.Errorf("rebuilt page: %w", err)
	}
	w, err := sequenceData(want)
	if err != nil {
		return fmt.Errorf("real page: %w", err)
	}
	lastG, cntG := int64(le.Uint64(got[g:])), int64(le.Uint64(got[g+8:]))
	lastW, cntW := int64(le.Uint64(want[w:])), int64(le.Uint64(want[w+8:]))
	if cntG != 0 || lastG != lastW+cntW*increment || got[g+16] != want[w+16] {
		return fmt.Errorf("logged last_value %d log_cnt %d is_called %d; page last_value %d log_cnt %d is_called %d, increment %d",
			lastG, cntG, got[g+16], lastW, cntW, want[w+16], increment)
	}
	copy(want[w:w+16], got[g:g+16])
	return nil
}

// sequenceData is the offset of FormData_pg_sequence_data (last_value,
// log_cnt, is_called) in a sequence page: the data of its only tuple.
func sequenceData(p []byte) (int, error) {
	lp := binary.LittleEndian.Uint32(p[24:]) // ItemIdData of offset 1
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

// slruDirs are the SLRUs' directories in a data directory.
var slruDirs = map[PageKind]string{
	PageClog:             "pg_xact",
	PageMultiXactOffsets: filepath.Join("pg_multixact", "offsets"),
	PageMultiXactMembers: filepath.Join("pg_multixact", "members"),
}

// readSLRUs reads every page of the SLRU segment files of a data directory.
func readSLRUs(t *testing.T, dataDir string) map[slruPage][]byte {
	t.Helper()
	pages := map[slruPage][]byte{}
	for kind, dir := range slruDirs {
		entries, err := os.ReadDir(filepath.Join(dataDir, dir))
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range entries {
			segno, err := strconv.ParseUint(e.Name(), 16, 32)
			if err != nil {
				t.Fatalf("%s/%s is not an SLRU segment", dir, e.Name())
			}
			data, err := os.ReadFile(filepath.Join(dataDir, dir, e.Name()))
			if err != nil {
				t.Fatal(err)
			}
			for i := 0; i+pgdata.BlockSize <= len(data); i += pgdata.BlockSize {
				pageno := uint32(segno)*pgdata.SLRUPagesPerSegment + uint32(i/pgdata.BlockSize)
				pages[slruPage{kind, pageno}] = data[i : i+pgdata.BlockSize]
			}
		}
	}
	return pages
}

// checkSLRUs rebuilds every page of pg_xact and pg_multixact in Go, from
// the pages initdb left and the WAL since, and compares it with the file.
func checkSLRUs(t *testing.T, dataDir string, base map[slruPage][]byte, h *history) {
	final := readSLRUs(t, dataDir)
	keys := make([]slruPage, 0, len(final))
	for k := range final {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		return keys[i].kind < keys[j].kind || keys[i].kind == keys[j].kind && keys[i].page < keys[j].page
	})
	tally := map[string]int{}
	for _, k := range keys {
		page := make([]byte, pgdata.BlockSize)
		copy(page, base[k])
		steps := h.slru[k]
		for _, s := range steps {
			if s.zero {
				clear(page)
				continue
			}
			if err := ApplyOp(page, k.page, s.op); err != nil {
				t.Fatalf("%s page %d at %v: %v", slruDirs[k.kind], k.page, s.lsn, err)
			}
		}
		if want := final[k]; !bytes.Equal(page, want) {
			t.Errorf("%s page %d differs at byte %d after %d changes", slruDirs[k.kind], k.page, firstDiff(page, want), len(steps))
			continue
		}
		what := "unchanged since initdb"
		if len(steps) > 0 {
			what = "rebuilt from WAL"
		}
		tally[fmt.Sprintf("equal %s, %s", slruDirs[k.kind], what)]++
	}
	report(t, fmt.Sprintf("%d SLRU pages", len(keys)), tally)
	for kind, dir := range slruDirs {
		if tally[fmt.Sprintf("equal %s, rebuilt from WAL", dir)] == 0 {
			t.Errorf("no %s page was rebuilt from WAL (kind %d): the workload should change them", dir, kind)
		}
	}
}
