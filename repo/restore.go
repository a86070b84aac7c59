package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"hash/crc32"
	"io"
	"path/filepath"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/layer"
	"github.com/zenithdb/zenith/repo/vfs"
)

// detachedSuffix marks a tenant directory being removed by a detach: a
// crash leaves it for Tenants to remove (its remote objects stay).
const detachedSuffix = ".detached"

// ErrNoRemoteStorage: attach or detach on a repository without remote
// storage.
var ErrNoRemoteStorage = errors.New("the page server has no remote storage")

// AttachTenant attaches tenant tid to this page server at generation gen
// (see Generation). A tenant here already takes the new generation (an
// older one is ErrStaleGeneration). Otherwise its marker of gen is
// published, then its newest indexes and files at or below gen are read:
// every timeline's layer files are downloaded and checked against its
// index before its metadata is written, the tenant's settings last, so an
// interrupted attach is resumed by the next one. A tenant that remote
// storage does not hold is ErrTenantNotFound.
func (r *Repository) AttachTenant(ctx context.Context, tid id.TenantID, gen Generation) (*Tenant, error) {
	if gen == 0 {
		return nil, ErrInvalidGeneration
	}
	if r.remote == nil {
		return nil, ErrNoRemoteStorage
	}
	r.attachMu.Lock()
	defer r.attachMu.Unlock()
	tn, err := r.Tenant(tid)
	if err == nil {
		return tn, tn.advanceGeneration(ctx, gen)
	}
	if !errors.Is(err, ErrTenantNotFound) {
		return nil, err
	}
	dir := r.tenantDir(tid)
	if _, err := r.fs.Stat(dir + deletedSuffix); err == nil {
		return nil, fmt.Errorf("tenant %s is being deleted here: %w", tid, ErrTenantNotFound)
	}
	if err := vfs.RemoveAll(r.fs, dir+detachedSuffix); err != nil {
		return nil, fmt.Errorf("attach tenant %s: %w", tid, err)
	}
	prefix := remoteTenantPrefix(tid)
	objects, err := r.remote.List(ctx, prefix)
	if err != nil {
		return nil, fmt.Errorf("attach tenant %s: %w", tid, err)
	}
	if _, ok := latestObjects(objects, prefix, gen)[tenantConfigFile]; !ok {
		return nil, fmt.Errorf("tenant %s: not in remote storage (at or below generation %v): %w", tid, gen, ErrTenantNotFound)
	}
	start := r.now()
	if err := r.publishGeneration(ctx, prefix, gen); err != nil {
		return nil, fmt.Errorf("attach tenant %s: %w", tid, err)
	}
	if newest, err := r.newestGeneration(ctx, prefix); err != nil {
		return nil, fmt.Errorf("attach tenant %s: %w", tid, err)
	} else if newest > gen {
		return nil, fmt.Errorf("attach tenant %s at generation %v: generation %v was attached since: %w", tid, gen, newest, ErrStaleGeneration)
	}
	// Listed again: the marker is out, so whatever an older attachment
	// uploaded before it saw the marker is listed now.
	if objects, err = r.remote.List(ctx, prefix); err != nil {
		return nil, fmt.Errorf("attach tenant %s: %w", tid, err)
	}
	if err := r.restoreTenant(ctx, tid, gen, objects); err != nil {
		return nil, fmt.Errorf("attach tenant %s: %w", tid, err)
	}
	tn, err = r.Tenant(tid)
	if err != nil {
		return nil, err
	}
	r.log.Info().Str("tenant", tid.String()).Stringer("generation", gen).Int("timelines", len(tn.Timelines())).
		Dur("took", r.now().Sub(start)).Msg("attached tenant from remote storage")
	return tn, nil
}

// advanceGeneration moves a tenant here to generation gen: later uploads
// carry it, and the first upload of each timeline writes its index anew.
func (tn *Tenant) advanceGeneration(ctx context.Context, gen Generation) error {
	cur := tn.Generation()
	switch {
	case gen < cur:
		return fmt.Errorf("attach tenant %s at generation %v: it holds generation %v: %w", tn.id, gen, cur, ErrStaleGeneration)
	case gen == cur:
		return nil
	}
	r := tn.repo
	if err := r.publishGeneration(ctx, remoteTenantPrefix(tn.id), gen); err != nil {
		return fmt.Errorf("attach tenant %s: %w", tn.id, err)
	}
	if err := writeGeneration(r.fs, tn.dir, gen); err != nil {
		return fmt.Errorf("attach tenant %s: %w", tn.id, err)
	}
	tn.upload.mu.Lock()
	tn.gen.Store(uint32(gen))
	tn.stale.Store(false)
	tn.upload.uploaded = nil
	tn.upload.swept = time.Time{}
	tn.upload.mu.Unlock()
	for _, tl := range tn.loaded() {
		tl.upload.mu.Lock()
		tl.upload.known = false
		tl.upload.mu.Unlock()
	}
	tn.log.Info().Stringer("generation", gen).Stringer("previous", cur).Msg("tenant takes a new generation")
	r.RequestUpload()
	return nil
}

// DetachTenant stops holding tenant tid here: every timeline is flushed
// and, with the tenant's files, uploaded (an upload that fails leaves the
// tenant attached and is the error), then its local directory is removed.
// Its objects stay in remote storage for the next AttachTenant, here or on
// another page server. The caller stops the tenant's writers first.
func (r *Repository) DetachTenant(ctx context.Context, tid id.TenantID) error {
	if r.remote == nil {
		return ErrNoRemoteStorage
	}
	r.attachMu.Lock()
	defer r.attachMu.Unlock()
	tn, err := r.Tenant(tid)
	if err != nil {
		return err
	}
	// Every timeline loaded, so that every one is uploaded.
	for _, info := range tn.Timelines() {
		if _, err := tn.Timeline(info.ID); err != nil {
			return fmt.Errorf("detach tenant %s: %w", tid, err)
		}
	}
	for _, tl := range tn.loaded() {
		if err := tl.Flush(ctx); err != nil {
			return fmt.Errorf("detach tenant %s: %w", tid, err)
		}
	}
	if err := tn.Upload(ctx); err != nil {
		return fmt.Errorf("detach tenant %s: %w (it stays attached)", tid, err)
	}
	r.mu.Lock()
	delete(r.tenants, tid)
	r.mu.Unlock()
	dir, err := r.closeTenant(tn, detachedSuffix)
	if err != nil {
		return fmt.Errorf("detach tenant %s: %w", tid, err)
	}
	if err := vfs.RemoveAll(r.fs, dir+detachedSuffix); err != nil {
		return fmt.Errorf("detach tenant %s: %w", tid, err)
	}
	r.log.Info().Str("tenant", tid.String()).Stringer("generation", tn.Generation()).Msg("detached tenant")
	return vfs.SyncDir(r.fs, r.tenantsDir())
}

// restoreTenant brings into the work directory what it lacks of tenant
// tid as its attachment of generation gen reads it from objects (the
// listing of the tenant's prefix).
func (r *Repository) restoreTenant(ctx context.Context, tid id.TenantID, gen Generation, objects []string) error {
	dir := r.tenantDir(tid)
	prefix := remoteTenantPrefix(tid)
	var timelines []id.TimelineID
	for _, p := range objects {
		parts := strings.Split(strings.TrimPrefix(p, prefix), "/")
		if len(parts) != 3 || parts[0] != "timelines" {
			continue
		}
		if name, g := splitGeneration(parts[2]); name != indexFile || g > gen {
			continue
		}
		if tlid, err := id.ParseTimelineID(parts[1]); err == nil && !slices.Contains(timelines, tlid) {
			timelines = append(timelines, tlid)
		}
	}
	for _, tlid := range timelines {
		tldir := filepath.Join(dir, "timelines", tlid.String())
		if _, err := r.fs.Stat(filepath.Join(tldir, metadataFile)); err == nil {
			continue // an interrupted attach restored it
		}
		if err := vfs.MkdirDurable(r.fs, tldir, 0o755); err != nil {
			return err
		}
		if err := r.restoreTimeline(ctx, tid, tlid, tldir, gen); err != nil {
			return fmt.Errorf("timeline %s: %w", tlid, err)
		}
	}
	if err := vfs.MkdirDurable(r.fs, filepath.Join(dir, "timelines"), 0o755); err != nil {
		return err
	}
	files := latestObjects(objects, prefix, gen)
	names := make([]string, 0, len(files))
	for name := range files {
		if slices.Contains(r.cfg.TenantFiles, name) {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	// The settings last: they make the tenant exist.
	names = append(names, tenantConfigFile)
	for _, name := range names {
		if name == tenantConfigFile {
			if err := writeGeneration(r.fs, dir, gen); err != nil {
				return err
			}
		}
		var buf bytes.Buffer
		if err := r.download(ctx, prefix+name+files[name].suffix(), &buf); err != nil {
			return err
		}
		if _, err := vfs.WriteFileAtomic(r.fs, filepath.Join(dir, name), buf.Bytes(), 0o600); err != nil {
			return err
		}
	}
	return nil
}

// restoreTimeline downloads a timeline's newest index at or below gen
// and writes its metadata in dir. An older generation's index is first
// uploaded again as generation gen's: the attachment goes on from the
// index it read, not from what a stale page server of that older
// generation (which goes on uploading its index) may put there later.
func (r *Repository) restoreTimeline(ctx context.Context, tid id.TenantID, tlid id.TimelineID, dir string, gen Generation) error {
	idx, p, err := r.latestIndex(ctx, tid, tlid, gen)
	if err != nil {
		return err
	}
	// The layer files are fetched at their first read (fetchLayer).
	for _, name := range idx.Metadata.Layers {
		if _, err := layer.ParseFileName(name); err != nil {
			return &CorruptionError{File: remoteName(p), Offset: -1, Err: err}
		}
	}
	if own := remoteTimelinePrefix(tid, tlid) + indexFile + gen.suffix(); p != own {
		b, err := encodeEnvelope(idx)
		if err != nil {
			return err
		}
		if err := r.remote.Upload(ctx, own, bytes.NewReader(b)); err != nil {
			return err
		}
	}
	b, err := encodeMetadata(idx.Metadata)
	if err != nil {
		return err
	}
	_, err = vfs.WriteFileAtomic(r.fs, filepath.Join(dir, metadataFile), b, 0o644)
	return err
}

// downloadLayer downloads the layer file at p to name, checking its size
// and checksum against the index's; a mismatch is a *CorruptionError
// naming the remote object, and nothing is left at name.
func (r *Repository) downloadLayer(ctx context.Context, p, name string, want remoteLayer) error {
	tmp := name + layer.TempSuffix
	f, err := r.fs.Create(tmp)
	if err != nil {
		return err
	}
	h := crc32.New(castagnoli)
	cw := &countingWriter{w: io.MultiWriter(f, h)}
	err = r.download(ctx, p, cw)
	if err == nil && (cw.n != want.Size || h.Sum32() != want.CRC32C) {
		err = &CorruptionError{File: remoteName(p), Offset: -1, Err: fmt.Errorf(
			"downloaded %d bytes with checksum %08x, the index says %d bytes with checksum %08x", cw.n, h.Sum32(), want.Size, want.CRC32C)}
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = r.fs.Rename(tmp, name)
	}
	if err != nil {
		_ = r.fs.Remove(tmp) // best effort: the next load removes it
		return err
	}
	return nil
}

// download copies the object at p to w, counting it.
func (r *Repository) download(ctx context.Context, p string, w io.Writer) error {
	cw := &countingWriter{w: w}
	err := r.remote.Download(ctx, p, cw)
	r.remoteStats.Downloads.Add(1)
	r.remoteStats.DownloadedBytes.Add(cw.n)
	return err
}

type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}
