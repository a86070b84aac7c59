package repo

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"sync"
	"sync/atomic"

	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/layer"
	"github.com/zenithdb/zenith/repo/layermap"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/value"
	"github.com/zenithdb/zenith/repo/vfs"
)

// Timeline is one branch of a tenant's history: its own layers, and
// optionally an ancestor timeline whose history it shares up to the branch
// point (AncestorLSN).
//
// One goroutine writes (Put and FinishWrite, in WAL order); any number
// read. A Timeline is safe for concurrent use.
type Timeline struct {
	tenant      *Tenant
	id          id.TimelineID
	dir         string
	ancestor    *Timeline
	ancestorLSN pgdata.LSN
	log         zerolog.Logger

	// writeMu serializes the writer with freezing.
	writeMu     sync.Mutex
	pending     []pendingPut
	pendingLast map[key.Key]pgdata.LSN

	// mu protects the fields below. Layers and maps are replaced, never
	// changed in place, so readers copy the pointers and read unlocked.
	mu          sync.RWMutex
	open        *layer.MemLayer
	frozen      []frozenLayer // oldest first
	state       durable
	last, prev  pgdata.LSN
	lsnAdvanced chan struct{} // closed when last advances, or ingest stops
	// ingestStopped is set when the timeline's ingest stopped (StopIngest).
	ingestStopped *IngestStoppedError

	flushMu   sync.Mutex // one flush at a time
	compactMu sync.Mutex // one compaction or GC at a time
	metaMu    sync.Mutex // one metadata write at a time

	// flushing is the step of a flush in progress, for FlushStalled.
	flushing vfs.InProgress
	// idle follows ingest for compaction's idle trigger (Compact).
	idle ingestIdle
	// busy is set while a background loop works on the timeline (by
	// loop), so that the next round skips it rather than wait.
	busy [numLoops]atomic.Bool

	upload timelineUpload
}

// durable is what the timeline's metadata file says.
type durable struct {
	layers            *layermap.Map // layer files
	diskConsistentLSN pgdata.LSN
	prevRecordLSN     pgdata.LSN
	gcCutoff          pgdata.LSN
	flushTimes        []flushTime
}

// frozenLayer is a frozen in-memory layer waiting to be flushed, with the
// previous-record LSN as of its end.
type frozenLayer struct {
	mem  *layer.MemLayer
	prev pgdata.LSN
}

type pendingPut struct {
	k   key.Key
	lsn pgdata.LSN
	v   value.Value
}

// loadTimeline builds a timeline from its metadata: the layer files it
// lists (opened at first read), and an empty in-memory layer from the
// disk-consistent LSN on. Files in dir that the metadata does not list are
// leftovers of an interrupted flush or compaction and are removed.
func loadTimeline(tn *Tenant, tid id.TimelineID, m metadata, ancestor *Timeline) (*Timeline, error) {
	repo := tn.repo
	dir := tn.timelineDir(tid)
	tl := &Timeline{
		tenant:      tn,
		id:          tid,
		dir:         dir,
		ancestor:    ancestor,
		ancestorLSN: m.AncestorLSN,
		log:         tn.log.With().Str("timeline", tid.String()).Logger(),
		pendingLast: make(map[key.Key]pgdata.LSN),
		last:        m.DiskConsistentLSN,
		prev:        m.PrevRecordLSN,
		lsnAdvanced: make(chan struct{}),
	}
	listed := make(map[string]bool, len(m.Layers))
	var files []layer.Layer
	for _, name := range m.Layers {
		d, err := layer.ParseFileName(name)
		if err != nil {
			return nil, &CorruptionError{File: filepath.Join(dir, metadataFile), Offset: -1, Err: err}
		}
		listed[name] = true
		files = append(files, layer.OpenFile(repo.env, dir, d))
	}
	names, err := repo.fs.List(dir)
	if err != nil {
		return nil, fmt.Errorf("list timeline directory: %w", err)
	}
	present := make(map[string]bool, len(names))
	for _, name := range names {
		present[name] = true
		if listed[name] || name == metadataFile {
			continue
		}
		if _, err := layer.ParseFileName(name); err == nil || filepath.Ext(name) == layer.TempSuffix {
			tl.log.Info().Str("file", name).Msg("removing layer file the metadata does not list")
			if err := repo.fs.Remove(filepath.Join(dir, name)); err != nil {
				return nil, fmt.Errorf("remove leftover layer file: %w", err)
			}
		}
	}
	for name := range listed {
		// With remote storage, a missing layer is fetched at its first
		// read (see Repository.fetchLayer).
		if !present[name] && repo.remote == nil {
			return nil, &CorruptionError{File: filepath.Join(dir, name), Offset: -1, Err: errors.New("layer file listed in the metadata is missing")}
		}
	}
	tl.state = durable{
		layers:            layermap.New(files...),
		diskConsistentLSN: m.DiskConsistentLSN,
		prevRecordLSN:     m.PrevRecordLSN,
		gcCutoff:          m.GCCutoffLSN,
		flushTimes:        m.FlushTimes,
	}
	tl.open = layer.NewMemLayer(m.DiskConsistentLSN+1, repo.now())
	return tl, nil
}

// ID is the timeline's id.
func (tl *Timeline) ID() id.TimelineID { return tl.id }

// Ancestor returns the ancestor timeline's id and the branch point; the id
// is zero for a timeline without an ancestor.
func (tl *Timeline) Ancestor() (id.TimelineID, pgdata.LSN) {
	if tl.ancestor == nil {
		return id.TimelineID{}, 0
	}
	return tl.ancestor.id, tl.ancestorLSN
}

// LastRecordLSN is the end of the last record ingested (FinishWrite); reads
// at or below it are answered.
func (tl *Timeline) LastRecordLSN() pgdata.LSN {
	tl.mu.RLock()
	defer tl.mu.RUnlock()
	return tl.last
}

// PrevRecordLSN is the start of the last record ingested, as given to
// FinishWrite (0 if not known).
func (tl *Timeline) PrevRecordLSN() pgdata.LSN {
	tl.mu.RLock()
	defer tl.mu.RUnlock()
	return tl.prev
}

// DiskConsistentLSN is the LSN up to which the timeline is durable: after a
// crash, WAL after it must be ingested again.
func (tl *Timeline) DiskConsistentLSN() pgdata.LSN {
	tl.mu.RLock()
	defer tl.mu.RUnlock()
	return tl.state.diskConsistentLSN
}

// GCCutoff is the lowest LSN the timeline can still be read at.
func (tl *Timeline) GCCutoff() pgdata.LSN {
	tl.mu.RLock()
	defer tl.mu.RUnlock()
	return tl.state.gcCutoff
}

// WaitForLSN waits until records up to lsn have been ingested, or ctx ends.
// If the timeline's ingest stopped before lsn (StopIngest), it fails at
// once with the *IngestStoppedError.
func (tl *Timeline) WaitForLSN(ctx context.Context, lsn pgdata.LSN) error {
	for {
		tl.mu.RLock()
		last, ch, stopped := tl.last, tl.lsnAdvanced, tl.ingestStopped
		tl.mu.RUnlock()
		if last >= lsn {
			return nil
		}
		if stopped != nil {
			return fmt.Errorf("wait for %v: %w", lsn, stopped)
		}
		select {
		case <-ch:
		case <-ctx.Done():
			return fmt.Errorf("wait for %v on timeline %s (at %v): %w", lsn, tl.id, last, ctx.Err())
		}
	}
}

// view is a consistent picture of a timeline's layers, for one read.
type view struct {
	mems     []*layer.MemLayer // the open layer, then the frozen ones newest first
	files    *layermap.Map
	last     pgdata.LSN
	gcCutoff pgdata.LSN
}

// view returns the timeline's layers and LSNs as of now.
func (tl *Timeline) view() view {
	tl.mu.RLock()
	defer tl.mu.RUnlock()
	mems := make([]*layer.MemLayer, 0, 1+len(tl.frozen))
	mems = append(mems, tl.open)
	for i := len(tl.frozen) - 1; i >= 0; i-- {
		mems = append(mems, tl.frozen[i].mem)
	}
	return view{mems: mems, files: tl.state.layers, last: tl.last, gcCutoff: tl.state.gcCutoff}
}

// files returns the timeline's layer files as of now.
func (tl *Timeline) files() *layermap.Map {
	tl.mu.RLock()
	defer tl.mu.RUnlock()
	return tl.state.layers
}

// metadataOf renders d as the timeline's metadata.
func (tl *Timeline) metadataOf(d durable) metadata {
	m := metadata{
		AncestorLSN:       tl.ancestorLSN,
		DiskConsistentLSN: d.diskConsistentLSN,
		PrevRecordLSN:     d.prevRecordLSN,
		GCCutoffLSN:       d.gcCutoff,
		Layers:            []string{},
		FlushTimes:        d.flushTimes,
	}
	if tl.ancestor != nil {
		a := tl.ancestor.id
		m.Ancestor = &a
	}
	for _, l := range d.layers.Layers() {
		m.Layers = append(m.Layers, l.Desc().FileName())
	}
	return m
}

// commit durably replaces the metadata with change applied to the current
// durable state; once the new file and its directory entry are durable it
// installs the new state and runs install, both under mu. On error nothing
// is installed. listed reports whether the new metadata file may be in
// place (only the directory fsync failed): then it may survive a crash, so
// the caller must delete neither the files it added nor those it meant to
// drop; the next commit's metadata, written from the installed state,
// settles which are listed.
func (tl *Timeline) commit(change func(d *durable), install func()) (listed bool, err error) {
	tl.metaMu.Lock()
	defer tl.metaMu.Unlock()
	tl.mu.RLock()
	d := tl.state
	tl.mu.RUnlock()
	d.flushTimes = append([]flushTime(nil), d.flushTimes...)
	change(&d)
	b, err := encodeMetadata(tl.metadataOf(d))
	if err != nil {
		return false, err
	}
	renamed, err := vfs.WriteFileAtomic(tl.tenant.repo.fs, filepath.Join(tl.dir, metadataFile), b, 0o644)
	if err != nil {
		return renamed, fmt.Errorf("timeline %s: %w", tl.id, err)
	}
	tl.mu.Lock()
	tl.state = d
	if install != nil {
		install()
	}
	tl.mu.Unlock()
	tl.tenant.repo.RequestUpload()
	return true, nil
}

// close closes the timeline's layer files.
func (tl *Timeline) close() error {
	tl.mu.RLock()
	m := tl.state.layers
	tl.mu.RUnlock()
	var first error
	for _, l := range m.Layers() {
		if err := l.(*layer.File).Close(); err != nil && first == nil {
			first = err
		}
	}
	return first
}
