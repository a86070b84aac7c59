package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"io/fs"
	"path"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/layer"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/remote"
	"github.com/zenithdb/zenith/repo/vfs"
)

// The layout of remote storage mirrors the work directory, every name
// but the generation markers ending in the generation of the attachment
// that uploaded it (see Generation; "-0000002a" for 42, nothing for 0):
//
//	tenants/<tenant id>/config.toml-<gen>                 the tenant's settings
//	tenants/<tenant id>/<tenant file>-<gen>               Config.TenantFiles
//	tenants/<tenant id>/generations/<gen>                 one per attachment
//	tenants/<tenant id>/timelines/<timeline id>/index.json-<gen>
//	tenants/<tenant id>/timelines/<timeline id>/<layer file>-<gen>
//
// An attachment of generation g reads, of each name, the object of the
// highest generation at or below g.
//
// A layer file is uploaded before any index that lists it, and removed
// only after an index that no longer lists it is uploaded: whatever the
// moment a page server stops, the newest index and the layers it lists are
// all there. An attachment starts from a copy of the index it attached
// from, under its own generation; once it has uploaded its index, and
// then every fencedSweepInterval, it removes the objects of older
// generations that its index does not list (removeFencedLocked): what a
// stale page server goes on uploading is garbage to every attachment from
// then on.
const (
	remoteTenantsDir = "tenants"
	indexFile        = "index.json"
	indexVersion     = 1
)

func remoteTenantPrefix(t id.TenantID) string {
	return remoteTenantsDir + "/" + t.String() + "/"
}

func remoteTimelinePrefix(t id.TenantID, tl id.TimelineID) string {
	return remoteTenantPrefix(t) + "timelines/" + tl.String() + "/"
}

// remoteName names an object for messages: the remote storage's name of
// the object at p.
func remoteName(p string) string { return "remote object " + p }

// remoteIndex is a timeline's index in remote storage: its metadata, and
// the size and checksum of every layer file the metadata lists, which a
// download checks.
type remoteIndex struct {
	Version    int                    `json:"version"`
	Metadata   metadata               `json:"metadata"`
	LayerFiles map[string]remoteLayer `json:"layer_files"`
}

// remoteLayer is what the index says of one uploaded layer file.
type remoteLayer struct {
	Size   int64  `json:"size"`
	CRC32C uint32 `json:"crc32c"`
	// Generation is the generation whose upload the object is: its name
	// ends with it.
	Generation Generation `json:"generation,omitempty"`
}

// object is the path of the layer file name under the timeline prefix.
func (rl remoteLayer) object(prefix, name string) string {
	return prefix + name + rl.Generation.suffix()
}

// decodeIndex reads an index downloaded from p, checking it whole.
func decodeIndex(b []byte, p string) (remoteIndex, error) {
	var idx remoteIndex
	if err := decodeEnvelope(b, remoteName(p), &idx); err != nil {
		return idx, err
	}
	if idx.Version != indexVersion {
		return idx, fmt.Errorf("%s: unsupported index version %d", remoteName(p), idx.Version)
	}
	for _, name := range idx.Metadata.Layers {
		if _, ok := idx.LayerFiles[name]; !ok {
			return idx, &CorruptionError{File: remoteName(p), Offset: -1, Err: fmt.Errorf("layer %s has no size and checksum", name)}
		}
	}
	return idx, nil
}

// timelineUpload is a timeline's side of remote storage.
type timelineUpload struct {
	mu sync.Mutex // one upload at a time
	// known is set once the remote index has been read (or found absent).
	known bool
	// uploaded holds the layer files in remote storage: those of the
	// last index uploaded and those uploaded since. file is the local
	// layer an upload was made from; nil when it is not known to match a
	// local one (it is uploaded again if the timeline lists it).
	uploaded map[string]uploadedLayer
	// lastIndex is the last index uploaded (or found), as encoded.
	lastIndex []byte
	// swept is when the objects of older generations that no index
	// lists were last removed (zero: not yet in this generation; see
	// removeFencedLocked).
	swept time.Time
	// lsn is the remote-consistent LSN: the disk-consistent LSN of the
	// last index uploaded.
	lsn atomic.Uint64
}

type uploadedLayer struct {
	file *layer.File
	remoteLayer
}

// RemoteStats counts the repository's traffic with remote storage.
type RemoteStats struct {
	Uploads, UploadedBytes, UploadErrors atomic.Int64
	Downloads, DownloadedBytes           atomic.Int64
	// LayerFetches counts layer files downloaded at a read; Evictions,
	// layer files evicted from the local disk.
	LayerFetches, Evictions atomic.Int64
}

// RemoteConsistentLSN is the LSN up to which the timeline is in remote
// storage: a page server that loses its disk restores the timeline as of
// it. 0 before the first upload, and without remote storage.
func (tl *Timeline) RemoteConsistentLSN() pgdata.LSN {
	return pgdata.LSN(tl.upload.lsn.Load())
}

// DurableLSN is the LSN up to which the timeline survives the loss of
// this page server: with remote storage its remote-consistent LSN (a
// page server whose disk is lost restores it from there), without it the
// disk-consistent LSN (what survives a crash). The WAL above it must be
// kept where it came from (the safekeepers) to rebuild the rest.
func (tl *Timeline) DurableLSN() pgdata.LSN {
	if tl.tenant.repo.remote != nil {
		return tl.RemoteConsistentLSN()
	}
	return tl.DiskConsistentLSN()
}

// Upload uploads the timeline's new layer files and then its index, so
// that remote storage holds it as of its disk-consistent LSN at the call.
// On error, RemoteConsistentLSN stays where the last complete upload put
// it, and the next Upload carries on. Without remote storage it does
// nothing.
func (tl *Timeline) Upload(ctx context.Context) error {
	repo := tl.tenant.repo
	if repo.remote == nil {
		return nil
	}
	u := &tl.upload
	u.mu.Lock()
	defer u.mu.Unlock()
	err := tl.uploadLocked(ctx)
	if err != nil {
		repo.remoteStats.UploadErrors.Add(1)
		return fmt.Errorf("upload timeline %s of tenant %s: %w", tl.id, tl.tenant.id, err)
	}
	return nil
}

func (tl *Timeline) uploadLocked(ctx context.Context) error {
	repo := tl.tenant.repo
	u := &tl.upload
	prefix := remoteTimelinePrefix(tl.tenant.id, tl.id)
	gen := tl.tenant.Generation()
	if !u.known {
		if err := tl.readRemoteIndex(ctx); err != nil {
			return err
		}
	}
	tl.mu.RLock()
	d := tl.state
	tl.mu.RUnlock()
	idx := remoteIndex{Version: indexVersion, Metadata: tl.metadataOf(d), LayerFiles: map[string]remoteLayer{}}
	idx.Metadata.Version = metadataVersion
	for _, l := range d.layers.Layers() {
		f := l.(*layer.File)
		name := f.Desc().FileName()
		if up, ok := u.uploaded[name]; ok && up.file == f {
			idx.LayerFiles[name] = up.remoteLayer
			continue
		}
		rl, err := uploadFile(ctx, repo, f.Path(), prefix+name+gen.suffix())
		rl.Generation = gen
		if err != nil {
			return err
		}
		u.uploaded[name] = uploadedLayer{file: f, remoteLayer: rl}
		idx.LayerFiles[name] = rl
	}
	b, err := encodeEnvelope(idx)
	if err != nil {
		return err
	}
	if !bytes.Equal(b, u.lastIndex) {
		if err := repo.remote.Upload(ctx, prefix+indexFile+gen.suffix(), bytes.NewReader(b)); err != nil {
			return err
		}
		repo.remoteStats.Uploads.Add(1)
		repo.remoteStats.UploadedBytes.Add(int64(len(b)))
		u.lastIndex = b
		u.lsn.Store(uint64(idx.Metadata.DiskConsistentLSN))
		tl.log.Debug().Stringer("remote_consistent_lsn", idx.Metadata.DiskConsistentLSN).Int("layers", len(idx.LayerFiles)).Msg("uploaded index")
	}
	// Only now may the layers the index no longer lists go, and the
	// objects of older generations it does not list (every attachment
	// from now on reads this index or a newer one), and only while no
	// newer attachment may have read an index listing them.
	var gone []string
	for name := range u.uploaded {
		if _, ok := idx.LayerFiles[name]; !ok {
			gone = append(gone, name)
		}
	}
	sweep := repo.sweepDue(u.swept)
	if len(gone) == 0 && !sweep {
		return nil
	}
	if ok, err := tl.tenant.mayDelete(ctx); err != nil || !ok {
		return err
	}
	for _, name := range gone {
		if err := repo.remote.Delete(ctx, u.uploaded[name].object(prefix, name)); err != nil {
			return err
		}
		delete(u.uploaded, name)
	}
	if sweep {
		return tl.removeFencedLocked(ctx)
	}
	return nil
}

// readRemoteIndex learns what remote storage holds of the timeline: the
// layers of its newest index at or below the tenant's generation (matched
// to local layers of the same name and size) and its remote-consistent
// LSN. Objects no index lists (layers of an upload interrupted before its
// index) stay: another page server's upload may be what is under way.
func (tl *Timeline) readRemoteIndex(ctx context.Context) error {
	repo := tl.tenant.repo
	u := &tl.upload
	u.uploaded = map[string]uploadedLayer{}
	u.lastIndex = nil
	u.swept = time.Time{}
	idx, p, err := repo.latestIndex(ctx, tl.tenant.id, tl.id, tl.tenant.Generation())
	switch {
	case errors.Is(err, remote.ErrNotFound):
	case err != nil:
		return err
	default:
		local := map[string]*layer.File{}
		for _, l := range tl.files().Layers() {
			f := l.(*layer.File)
			local[f.Desc().FileName()] = f
		}
		for name, rl := range idx.LayerFiles {
			up := uploadedLayer{remoteLayer: rl}
			if f := local[name]; f != nil {
				// A layer not on the local disk was never downloaded
				// or was evicted: the remote object is its copy.
				if st, err := repo.fs.Stat(f.Path()); errors.Is(err, fs.ErrNotExist) || (err == nil && st.Size() == rl.Size) {
					up.file = f
				}
			}
			u.uploaded[name] = up
		}
		if strings.HasSuffix(p, indexFile+tl.tenant.Generation().suffix()) {
			// Our own: uploading it again would change nothing.
			u.lastIndex, _ = encodeEnvelope(idx)
		}
		u.lsn.Store(uint64(idx.Metadata.DiskConsistentLSN))
	}
	u.known = true
	return nil
}

// latestIndex downloads and checks the newest index of a timeline at or
// below generation gen, and says where it was; remote.ErrNotFound if
// there is none.
func (r *Repository) latestIndex(ctx context.Context, tid id.TenantID, tlid id.TimelineID, gen Generation) (remoteIndex, string, error) {
	prefix := remoteTimelinePrefix(tid, tlid)
	objects, err := r.remote.List(ctx, prefix+indexFile)
	if err != nil {
		return remoteIndex{}, "", err
	}
	g, ok := latestObjects(objects, prefix, gen)[indexFile]
	if !ok {
		return remoteIndex{}, "", fmt.Errorf("index of timeline %s: %w", tlid, remote.ErrNotFound)
	}
	p := prefix + indexFile + g.suffix()
	var buf bytes.Buffer
	if err := r.download(ctx, p, &buf); err != nil {
		return remoteIndex{}, p, err
	}
	idx, err := decodeIndex(buf.Bytes(), p)
	return idx, p, err
}

// uploadFile uploads the local file name to the object at p and returns
// its size and checksum. The checksum is computed first, then the file is
// uploaded from a seekable reader, so that a backend may retry.
func uploadFile(ctx context.Context, repo *Repository, name, p string) (remoteLayer, error) {
	f, err := repo.fs.Open(name)
	if err != nil {
		return remoteLayer{}, fmt.Errorf("upload %s: %w", name, err)
	}
	defer f.Close()
	h := crc32.New(castagnoli)
	n, err := io.Copy(h, f)
	if err != nil {
		return remoteLayer{}, fmt.Errorf("upload %s: %w", name, err)
	}
	if err := repo.remote.Upload(ctx, p, io.NewSectionReader(f, 0, n)); err != nil {
		return remoteLayer{}, err
	}
	repo.remoteStats.Uploads.Add(1)
	repo.remoteStats.UploadedBytes.Add(n)
	return remoteLayer{Size: n, CRC32C: h.Sum32()}, nil
}

// tenantUpload is a tenant's side of remote storage: the checksums of its
// files as last uploaded in this generation, and when the files of older
// generations were last removed (see Tenant.removeFencedLocked).
type tenantUpload struct {
	mu       sync.Mutex
	uploaded map[string]uint32
	swept    time.Time
}

// Upload uploads the tenant's files (its settings and Config.TenantFiles)
// that changed since their last upload, then every loaded timeline (see
// Timeline.Upload). It returns the first error; the rest still run.
func (tn *Tenant) Upload(ctx context.Context) error {
	if tn.repo.remote == nil {
		return nil
	}
	if err := tn.uploadFiles(ctx); err != nil {
		tn.repo.remoteStats.UploadErrors.Add(1)
		// Timelines wait: an index must never be in remote storage
		// without its tenant's settings.
		return fmt.Errorf("upload tenant %s: %w", tn.id, err)
	}
	var first error
	for _, tl := range tn.loaded() {
		if err := tl.Upload(ctx); err != nil && first == nil {
			first = err
		}
	}
	if err := tn.removeFenced(ctx); err != nil && first == nil {
		first = fmt.Errorf("upload tenant %s: %w", tn.id, err)
	}
	return first
}

func (tn *Tenant) uploadFiles(ctx context.Context) error {
	repo := tn.repo
	u := &tn.upload
	u.mu.Lock()
	defer u.mu.Unlock()
	if u.uploaded == nil {
		u.uploaded = map[string]uint32{}
	}
	for _, name := range append([]string{tenantConfigFile}, repo.cfg.TenantFiles...) {
		b, err := vfs.ReadFile(repo.fs, filepath.Join(tn.dir, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return err
		}
		sum := crc32.Checksum(b, castagnoli)
		if old, ok := u.uploaded[name]; ok && old == sum {
			continue
		}
		if err := repo.remote.Upload(ctx, path.Join(remoteTenantPrefix(tn.id), name)+tn.Generation().suffix(), bytes.NewReader(b)); err != nil {
			return err
		}
		repo.remoteStats.Uploads.Add(1)
		repo.remoteStats.UploadedBytes.Add(int64(len(b)))
		u.uploaded[name] = sum
	}
	return nil
}

// loadedTenants returns the tenants loaded so far.
func (r *Repository) loadedTenants() []*Tenant {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]*Tenant, 0, len(r.tenants))
	for _, tn := range r.tenants {
		out = append(out, tn)
	}
	return out
}

// uploadAll uploads every loaded tenant, then evicts what the disk
// budget says must go.
func (r *Repository) uploadAll(ctx context.Context) {
	for _, tn := range r.loadedTenants() {
		if err := tn.Upload(ctx); err != nil && ctx.Err() == nil {
			tn.log.Warn().Err(err).Msg("upload to remote storage (will retry)")
		}
	}
	if _, err := r.Evict(); err != nil {
		r.log.Warn().Err(err).Msg("evict layer files")
	}
}

// RequestUpload wakes the upload loop, which uploads what changed: a
// caller that changed one of Config.TenantFiles calls it.
func (r *Repository) RequestUpload() {
	select {
	case r.uploadCh <- struct{}{}:
	default:
	}
}

// RemoteStats returns the counters of traffic with remote storage.
func (r *Repository) RemoteStats() *RemoteStats { return &r.remoteStats }
