package repo_test

import (
	"context"
	"encoding/binary"
	"errors"
	"flag"
	"fmt"
	"math/rand"
	"os"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/value"
	"github.com/zenithdb/zenith/repo/vfs"
)

var (
	seedFlag = flag.Int64("seed", 0, "seed of TestModel (0: random; env ZENITH_REPO_SEED)")
	opsFlag  = flag.Int("ops", 10000, "operations of TestModel (env ZENITH_REPO_OPS)")
)

// TestModel drives a repository with random interleavings of puts (images,
// records, will_init records, operations, relation sizes), branch
// creations, freezes, flushes, compactions, GCs, injected I/O failures and
// crashes (at a random fsync inside a flush, compaction or GC), and checks
// reads against an in-memory model: after every put the keys it changed,
// after every other step every key of every timeline at every retained LSN
// where its value changes.
func TestModel(t *testing.T) {
	seed, ops := *seedFlag, *opsFlag
	if s := os.Getenv("ZENITH_REPO_SEED"); s != "" && seed == 0 {
		seed, _ = strconv.ParseInt(s, 10, 64)
	}
	if s := os.Getenv("ZENITH_REPO_OPS"); s != "" {
		ops, _ = strconv.Atoi(s)
	}
	if seed == 0 {
		seed = time.Now().UnixNano()
	}
	if testing.Short() {
		ops = min(ops, 2000)
	}
	t.Logf("seed %d, %d operations (replay: go test ./repo -run TestModel -seed %d)", seed, ops, seed)
	h := newHarness(t, seed)
	defer func() {
		if t.Failed() {
			t.Logf("last operations:\n%s", strings.Join(h.history, "\n"))
			t.Logf("FAILED with seed %d: go test ./repo -run TestModel -seed %d -ops %d", seed, seed, ops)
		}
	}()
	for i := 0; i < ops && !t.Failed(); i++ {
		h.step(i)
	}
	h.close()
	t.Logf("stats: %v", h.stats)
	if !t.Failed() && ops >= 5000 {
		for _, what := range []string{"gc-removed-layers", "compaction-l0", "image-layers", "crash", "branch"} {
			if h.stats[what] == 0 {
				t.Errorf("the run never exercised %s: %v", what, h.stats)
			}
		}
	}
}

// TestModelBatchReads is TestModel without the page cache, whose pages
// would otherwise answer many of the batch reads (checkBatch) before they
// reach the layers: every read goes through the layer files' shared
// iterators, over deltas, images, ancestors and missing keys.
func TestModelBatchReads(t *testing.T) {
	for seed := int64(1); seed <= 3; seed++ {
		t.Run(fmt.Sprint(seed), func(t *testing.T) {
			h := newHarnessWith(t, seed, func(c *repo.Config) { c.PageCacheSize = 0 })
			ops := 3000
			if testing.Short() {
				ops = 1000
			}
			for i := 0; i < ops && !t.Failed(); i++ {
				h.step(i)
			}
			h.close()
			if !t.Failed() && !testing.Short() {
				for _, what := range []string{"image-layers", "branch", "compaction-l0"} {
					if h.stats[what] == 0 {
						t.Errorf("the run never exercised %s: %v", what, h.stats)
					}
				}
			}
		})
	}
}

// modelTimeline is what the model knows of a timeline.
type modelTimeline struct {
	id        id.TimelineID
	parent    *modelTimeline
	branchLSN pgdata.LSN
	values    map[key.Key][]modelValue // own values, by LSN
	batches   []batch                  // every record ingested, for re-ingest after a crash
	last      pgdata.LSN
}

type modelValue struct {
	lsn pgdata.LSN
	v   value.Value
}

type batch struct {
	lsn, prev pgdata.LSN
	puts      []keyValue
}

type keyValue struct {
	k key.Key
	v value.Value
}

// get is what a read of k at lsn must return: the newest image at or
// below lsn (or nothing, after a will_init record) and the records after
// it, appended in order; ok is false when k has no value.
func (m *modelTimeline) get(k key.Key, lsn pgdata.LSN) ([]byte, bool) {
	var recs [][]byte
	var base []byte
	found := false
	end := lsn
walk:
	for cur := m; cur != nil; cur = cur.parent {
		vs := cur.values[k]
		for i := len(vs) - 1; i >= 0; i-- {
			if vs[i].lsn > end {
				continue
			}
			found = true
			if vs[i].v.Kind == value.KindImage {
				base = vs[i].v.Data
				break walk
			}
			recs = append(recs, vs[i].v.Data)
			if vs[i].v.WillInit {
				break walk
			}
		}
		end = min(end, cur.branchLSN)
	}
	out := append([]byte(nil), base...)
	for i := len(recs) - 1; i >= 0; i-- {
		out = append(out, recs[i]...)
	}
	return out, found
}

// changes returns the LSNs in [from, to] at which k's value on m changes,
// and from itself.
func (m *modelTimeline) changes(k key.Key, from, to pgdata.LSN) []pgdata.LSN {
	lsns := []pgdata.LSN{from}
	end := to
	for cur := m; cur != nil; cur = cur.parent {
		for _, v := range cur.values[k] {
			if v.lsn > from && v.lsn <= end {
				lsns = append(lsns, v.lsn)
			}
		}
		end = min(end, cur.branchLSN)
	}
	return lsns
}

// sizeKey holds the size of testRel's main fork: the model writes it with
// PutRelSize and reads it with RelSize too.
var sizeKey = key.RelSize(testRel, pgdata.ForkMain)

// keySpace is the keys the test writes: a few of every kind, so layers and
// key partitions have gaps and neighbours.
var keySpace = func() []key.Key {
	other := pgdata.RelFileNode{SpcNode: 1663, DbNode: 5, RelNode: 16390}
	ks := []key.Key{
		key.DBDir(), key.RelMap(1663, 5), key.RelDir(1663, 5),
		sizeKey, key.RelBlock(testRel, pgdata.ForkVM, 0),
		key.RelBlock(other, pgdata.ForkMain, 0), key.RelBlock(other, pgdata.ForkMain, 1),
		key.SLRUPage(key.Clog, 0, 0), key.SLRUPage(key.MultiXactMembers, 0, 3),
		key.TwoPhaseFile(77), key.Checkpoint(),
	}
	for i := uint32(0); i < 6; i++ {
		ks = append(ks, blk(i*3))
	}
	return ks
}()

// harness runs the repository and the model side by side.
type harness struct {
	t       *testing.T
	rng     *rand.Rand
	mem     *vfs.MemFS
	faulty  *vfs.Faulty
	cfg     repo.Config
	r       *repo.Repository
	tenant  id.TenantID
	tconf   repo.TenantConfig
	tls     []*modelTimeline
	byID    map[id.TimelineID]*modelTimeline
	history []string
	stats   map[string]int
	ctx     context.Context
	clock   time.Time
}

func newHarness(t *testing.T, seed int64) *harness {
	return newHarnessWith(t, seed, nil)
}

// newHarnessWith is newHarness with conf, if not nil, applied to the
// repository's configuration after the seed's choices.
func newHarnessWith(t *testing.T, seed int64, conf func(*repo.Config)) *harness {
	rng := rand.New(rand.NewSource(seed))
	mem := vfs.NewMem()
	h := &harness{
		t: t, rng: rng, mem: mem, faulty: vfs.NewFaulty(mem),
		byID: map[id.TimelineID]*modelTimeline{}, stats: map[string]int{},
		ctx: context.Background(), clock: time.Unix(1700000000, 0),
	}
	h.cfg = testConfig(h.faulty)
	h.cfg.PageCacheSize = []int64{0, 4 << 10, 1 << 20}[rng.Intn(3)]
	h.cfg.Now = func() time.Time { return h.clock }
	h.tconf = smallTenantConfig()
	h.tconf.CheckpointDistance = int64(1+rng.Intn(8)) << 10
	h.tconf.CompactionTargetSize = int64(1+rng.Intn(8)) << 10
	h.tconf.CompactionThreshold = 2 + rng.Intn(3)
	h.tconf.ImageCreationThreshold = 1 + rng.Intn(3)
	h.tconf.GCHorizon = int64(256 + rng.Intn(4096))
	if conf != nil {
		conf(&h.cfg)
	}
	t.Logf("page cache %d, tenant config %+v", h.cfg.PageCacheSize, h.tconf)
	h.r = mustOpen(t, h.cfg)
	h.tenant = id.NewTenantID()
	tn, err := h.r.CreateTenant(h.tenant, h.tconf)
	if err != nil {
		t.Fatal(err)
	}
	root := &modelTimeline{id: id.NewTimelineID(), values: map[key.Key][]modelValue{}, last: 0x100}
	if _, err := tn.CreateTimeline(root.id, root.last); err != nil {
		t.Fatal(err)
	}
	h.add(root)
	return h
}

func (h *harness) add(m *modelTimeline) {
	h.tls = append(h.tls, m)
	h.byID[m.id] = m
}

func (h *harness) logf(format string, args ...any) {
	h.history = append(h.history, fmt.Sprintf(format, args...))
	if len(h.history) > 40 {
		h.history = h.history[1:]
	}
}

func (h *harness) timeline(m *modelTimeline) *repo.Timeline {
	tn, err := h.r.Tenant(h.tenant)
	if err != nil {
		h.t.Fatal(err)
	}
	tl, err := tn.Timeline(m.id)
	if err != nil {
		h.t.Fatalf("load timeline %s: %v", m.id, err)
	}
	return tl
}

func (h *harness) pick() *modelTimeline { return h.tls[h.rng.Intn(len(h.tls))] }

func (h *harness) step(i int) {
	h.clock = h.clock.Add(time.Second)
	switch p := h.rng.Intn(100); {
	case p < 55:
		h.put(h.pick())
	case p < 60:
		h.branch(h.pick())
	case p < 66:
		m := h.pick()
		h.logf("%d freeze %s", i, m.id)
		h.timeline(m).Freeze()
		h.checkAll()
	case p < 74:
		m := h.pick()
		h.logf("%d flush %s", i, m.id)
		h.flush(m)
		h.checkAll()
	case p < 82:
		h.logf("%d compact", i)
		h.compact()
		h.checkAll()
	case p < 88:
		h.logf("%d gc", i)
		h.gc()
		h.checkAll()
	case p < 92:
		h.logf("%d fault", i)
		h.fault()
		h.checkAll()
	default:
		h.logf("%d crash", i)
		h.crash()
		h.checkAll()
	}
}

// randomValue returns a value for k at lsn whose bytes name both, so a
// misplaced value shows.
func (h *harness) randomValue(k key.Key, lsn pgdata.LSN) value.Value {
	if k == sizeKey {
		// Relation sizes are what the page server stores there.
		return value.Image(binary.BigEndian.AppendUint32(nil, uint32(h.rng.Intn(1000))))
	}
	tag := []byte(fmt.Sprintf("[%s@%v]", k.Hex()[30:], lsn))
	switch p := h.rng.Intn(100); {
	case p < 20:
		size := h.rng.Intn(64)
		if h.rng.Intn(10) == 0 {
			size = pgdata.BlockSize
		}
		b := make([]byte, size)
		h.rng.Read(b)
		return value.Image(append(tag, b...))
	case p < 30:
		return value.WALRecord(tag, true)
	case p < 40:
		// The stand-in redo appends the encoded operation: make it name
		// the key and LSN too.
		return value.OpValue(value.VMClear{HeapBlocks: []uint32{uint32(lsn), binary.BigEndian.Uint32(k[14:])}, Flags: k[13]}, false)
	default:
		return value.WALRecord(tag, false)
	}
}

func (h *harness) put(m *modelTimeline) {
	tl := h.timeline(m)
	lsn := m.last + pgdata.LSN(8*(1+h.rng.Intn(16)))
	b := batch{lsn: lsn, prev: m.last}
	if h.rng.Intn(20) != 0 { // some records touch no key
		for _, ki := range h.rng.Perm(len(keySpace))[:1+h.rng.Intn(3)] {
			k := keySpace[ki]
			b.puts = append(b.puts, keyValue{k, h.randomValue(k, lsn)})
		}
	}
	h.logf("put %s %v %d keys", m.id, lsn, len(b.puts))
	h.ingest(tl, m, b)
	for _, kv := range b.puts {
		h.check(m, tl, kv.k, lsn)
		h.check(m, tl, kv.k, lsn-1)
	}
}

// ingest applies a batch to the repository and the model.
func (h *harness) ingest(tl *repo.Timeline, m *modelTimeline, b batch) {
	for _, kv := range b.puts {
		var err error
		if kv.k == sizeKey {
			err = tl.PutRelSize(testRel, pgdata.ForkMain, b.lsn, binary.BigEndian.Uint32(kv.v.Data))
		} else {
			err = tl.Put(kv.k, b.lsn, kv.v)
		}
		if err != nil {
			h.t.Fatalf("Put(%v, %v): %v", kv.k, b.lsn, err)
		}
	}
	if err := tl.FinishWrite(b.lsn, b.prev); err != nil {
		h.t.Fatalf("FinishWrite(%v): %v", b.lsn, err)
	}
	if b.lsn <= m.last {
		return // re-ingest after a crash: the model has it
	}
	for _, kv := range b.puts {
		m.values[kv.k] = append(m.values[kv.k], modelValue{b.lsn, kv.v})
	}
	m.batches = append(m.batches, b)
	m.last = b.lsn
}

func (h *harness) branch(parent *modelTimeline) {
	ptl := h.timeline(parent)
	cutoff, last := ptl.GCCutoff(), ptl.LastRecordLSN()
	tn, _ := h.r.Tenant(h.tenant)
	// Invalid branch points are refused with the documented errors.
	if cutoff > 0 {
		if _, err := tn.Branch(h.ctx, id.NewTimelineID(), parent.id, cutoff-1); !errors.Is(err, repo.ErrBranchBeforeGCCutoff) {
			h.t.Fatalf("branch below the GC cut-off %v: error = %v, want ErrBranchBeforeGCCutoff", cutoff, err)
		}
	}
	if _, err := tn.Branch(h.ctx, id.NewTimelineID(), parent.id, last+1); !errors.Is(err, repo.ErrBranchAfterLastLSN) {
		h.t.Fatalf("branch after the last LSN %v: error = %v, want ErrBranchAfterLastLSN", last, err)
	}
	if len(h.tls) >= 10 {
		return
	}
	// Branch points at a record, just below one, or anywhere.
	lsn := cutoff + pgdata.LSN(h.rng.Int63n(int64(last-cutoff)+1))
	var at []pgdata.LSN
	for _, b := range parent.batches {
		if b.lsn > cutoff && b.lsn <= last {
			at = append(at, b.lsn)
		}
	}
	if len(at) > 0 && h.rng.Intn(3) > 0 {
		lsn = at[h.rng.Intn(len(at))] - pgdata.LSN(h.rng.Intn(2))
	}
	child := &modelTimeline{id: id.NewTimelineID(), parent: parent, branchLSN: lsn, values: map[key.Key][]modelValue{}, last: lsn}
	h.logf("branch %s from %s at %v", child.id, parent.id, lsn)
	if _, err := tn.Branch(h.ctx, child.id, parent.id, lsn); err != nil {
		h.t.Fatalf("Branch at %v (cut-off %v, last %v): %v", lsn, cutoff, last, err)
	}
	h.add(child)
	h.stats["branch"]++
	h.checkAll()
}

func (h *harness) flush(m *modelTimeline) {
	tl := h.timeline(m)
	if err := tl.Flush(h.ctx); err != nil {
		h.t.Fatalf("Flush: %v", err)
	}
	if got := tl.DiskConsistentLSN(); got != m.last {
		h.t.Fatalf("DiskConsistentLSN after Flush = %v, want the last record %v", got, m.last)
	}
}

func (h *harness) layerFiles() int {
	n := 0
	for _, m := range h.tls {
		names, _ := h.mem.List("/work/tenants/" + h.tenant.String() + "/timelines/" + m.id.String())
		for _, name := range names {
			if strings.Contains(name, "__") {
				n++
			}
		}
	}
	return n
}

func (h *harness) compact() {
	before := h.layerFiles()
	images := h.countImages()
	for _, m := range h.tls {
		if err := h.timeline(m).Compact(h.ctx); err != nil {
			h.t.Fatalf("Compact: %v", err)
		}
	}
	if h.layerFiles() < before {
		h.stats["compaction-l0"]++
	}
	h.stats["image-layers"] += h.countImages() - images
}

func (h *harness) countImages() int {
	n := 0
	for _, m := range h.tls {
		names, _ := h.mem.List("/work/tenants/" + h.tenant.String() + "/timelines/" + m.id.String())
		for _, name := range names {
			if i := strings.Index(name, "__"); i >= 0 && !strings.Contains(name[i:], "-") {
				n++
			}
		}
	}
	return n
}

func (h *harness) gc() {
	before := h.layerFiles()
	for _, m := range h.tls {
		tl := h.timeline(m)
		if err := tl.GC(h.ctx); err != nil {
			h.t.Fatalf("GC: %v", err)
		}
		// The cut-off keeps the horizon, and never goes above what is
		// on disk.
		cutoff := tl.GCCutoff()
		floor := m.branchLSN
		if h := pgdata.LSN(h.tconf.GCHorizon); m.last > h {
			floor = max(floor, m.last-h)
		}
		if cutoff > max(floor, m.branchLSN, 0x100) || cutoff > tl.DiskConsistentLSN() && cutoff > m.branchLSN {
			h.t.Fatalf("GC cut-off %v beyond the horizon (last %v, horizon %d) or the disk-consistent LSN %v", cutoff, m.last, h.tconf.GCHorizon, tl.DiskConsistentLSN())
		}
	}
	h.stats["gc-removed-layers"] += max(0, before-h.layerFiles())
}

// fault runs a flush, compaction or GC with one injected I/O failure. The
// operation may fail; nothing readable may change.
func (h *harness) fault() {
	ops := []vfs.Op{vfs.OpSync, vfs.OpSync, vfs.OpRename, vfs.OpCreate, vfs.OpWrite}
	op := ops[h.rng.Intn(len(ops))]
	n := h.rng.Intn(4)
	h.faulty.SetRule(func(o vfs.Op, name string) error {
		if o != op {
			return nil
		}
		if n--; n == -1 {
			return fmt.Errorf("%s %s: %w", o, name, vfs.ErrInjected)
		}
		return nil
	})
	defer h.faulty.SetRule(nil)
	var err error
	switch h.rng.Intn(3) {
	case 0:
		err = h.timeline(h.pick()).Flush(h.ctx)
	case 1:
		err = h.timeline(h.pick()).Compact(h.ctx)
	default:
		err = h.timeline(h.pick()).GC(h.ctx)
	}
	if err != nil && !errors.Is(err, vfs.ErrInjected) {
		h.t.Fatalf("with an injected %s failure: %v", op, err)
	}
	if err != nil {
		h.stats["failed-op"]++
	}
}

// crash kills the "process" at a random fsync of a flush, compaction or
// GC (or between operations): nothing written after that point survives.
// The repository is reopened and every timeline re-ingests what is after
// its disk-consistent LSN, as WAL would be re-streamed.
func (h *harness) crash() {
	h.stats["crash"]++
	durable := map[id.TimelineID]pgdata.LSN{}
	for _, m := range h.tls {
		durable[m.id] = h.timeline(m).DiskConsistentLSN()
	}
	n := h.rng.Intn(6)
	h.faulty.SetRule(func(o vfs.Op, name string) error {
		if o == vfs.OpSync {
			if n--; n == -1 {
				h.mem.Crash()
			}
		}
		return nil
	})
	for _, m := range h.tls {
		tl := h.timeline(m)
		switch h.rng.Intn(4) {
		case 0:
			_ = tl.Flush(h.ctx)
		case 1:
			_ = tl.Compact(h.ctx)
		case 2:
			_ = tl.GC(h.ctx)
		}
	}
	h.mem.Crash()
	_ = h.r.Close() // flushes, but nothing reaches the disk any more
	h.faulty.SetRule(nil)
	h.mem.Restart()
	h.r = mustOpen(h.t, h.cfg)
	for _, m := range h.tls {
		tl := h.timeline(m)
		disk := tl.DiskConsistentLSN()
		if disk < durable[m.id] {
			h.t.Fatalf("timeline %s lost durable data: disk-consistent LSN %v after the crash, %v before", m.id, disk, durable[m.id])
		}
		if tl.LastRecordLSN() != disk {
			h.t.Fatalf("timeline %s restarted at last record %v, disk-consistent %v", m.id, tl.LastRecordLSN(), disk)
		}
		for _, b := range m.batches {
			if b.lsn > disk {
				h.ingest(tl, m, b)
			}
		}
	}
}

func (h *harness) check(m *modelTimeline, tl *repo.Timeline, k key.Key, lsn pgdata.LSN) {
	want, found := m.get(k, lsn)
	got, err := tl.Get(h.ctx, k, lsn)
	switch {
	case !found && errors.Is(err, repo.ErrKeyNotFound):
	case !found:
		h.t.Fatalf("Get(%v, %v) on %s = %q, %v; want ErrKeyNotFound", k, lsn, m.id, got, err)
	case err != nil:
		h.t.Fatalf("Get(%v, %v) on %s: %v; want %q", k, lsn, m.id, err, want)
	case string(got) != string(want):
		h.t.Fatalf("Get(%v, %v) on %s =\n%q\nwant\n%q", k, lsn, m.id, got, want)
	}
	if k == sizeKey && found {
		n, err := tl.RelSize(h.ctx, testRel, pgdata.ForkMain, lsn)
		if err != nil || n != binary.BigEndian.Uint32(want) {
			h.t.Fatalf("RelSize at %v on %s = %d, %v; want %d", lsn, m.id, n, err, binary.BigEndian.Uint32(want))
		}
	}
}

// checkAll reads every key of every timeline at every retained LSN where
// its value changes (and at the GC cut-off): every distinct state; and at
// the last record LSN and one random retained LSN.
func (h *harness) checkAll() {
	for _, m := range h.tls {
		tl := h.timeline(m)
		cutoff, last := tl.GCCutoff(), tl.LastRecordLSN()
		if last != m.last {
			h.t.Fatalf("timeline %s: last record %v, model %v", m.id, last, m.last)
		}
		for _, k := range keySpace {
			// Every distinct state, plus the latest and a random LSN,
			// which a bug could make differ from the state before them.
			lsns := append(m.changes(k, cutoff, last), last, cutoff+pgdata.LSN(h.rng.Int63n(int64(last-cutoff)+1)))
			sort.Slice(lsns, func(i, j int) bool { return lsns[i] < lsns[j] })
			for _, lsn := range lsns {
				h.check(m, tl, k, lsn)
			}
		}
		for _, lsn := range []pgdata.LSN{last, cutoff, cutoff + pgdata.LSN(h.rng.Int63n(int64(last-cutoff)+1))} {
			h.checkBatch(m, tl, lsn)
		}
	}
}

// sortedKeySpace is keySpace in ascending order, as a batch reads it.
var sortedKeySpace = func() []key.Key {
	ks := append([]key.Key(nil), keySpace...)
	sort.Slice(ks, func(i, j int) bool { return ks[i].Less(ks[j]) })
	return ks
}()

// checkBatch reads every key of the key space at lsn in one batch read
// (repo.WithBatchRead), in ascending order, and checks each against the
// model, as check does for one Get; then again as a scan, whose layer
// file blocks bypass the block cache.
func (h *harness) checkBatch(m *modelTimeline, tl *repo.Timeline, lsn pgdata.LSN) {
	for _, scan := range []bool{false, true} {
		h.checkRun(m, tl, lsn, scan)
	}
}

func (h *harness) checkRun(m *modelTimeline, tl *repo.Timeline, lsn pgdata.LSN, scan bool) {
	ctx, end := repo.WithBatchRead(h.ctx, scan)
	for _, k := range sortedKeySpace {
		want, found := m.get(k, lsn)
		got, err := tl.GetReadOnly(ctx, k, lsn)
		switch {
		case !found && errors.Is(err, repo.ErrKeyNotFound):
		case !found:
			h.t.Fatalf("batch read (scan %v) of %v at %v on %s = %q, %v; want ErrKeyNotFound", scan, k, lsn, m.id, got, err)
		case err != nil:
			h.t.Fatalf("batch read (scan %v) of %v at %v on %s: %v; want %q", scan, k, lsn, m.id, err, want)
		case string(got) != string(want):
			h.t.Fatalf("batch read (scan %v) of %v at %v on %s =\n%q\nwant\n%q", scan, k, lsn, m.id, got, want)
		}
	}
	if err := end(); err != nil {
		h.t.Fatalf("end of a batch read on %s: %v", m.id, err)
	}
}

func (h *harness) close() {
	if err := h.r.Close(); err != nil {
		h.t.Errorf("Close: %v", err)
	}
}
