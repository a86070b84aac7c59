package repo

import (
	"bytes"
	"context"
	"fmt"
	"hash/crc32"
	"io"
	"path/filepath"
	"slices"
	"sort"
	"strings"

	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/layer"
	"github.com/zenithdb/zenith/repo/vfs"
)

// remoteTenant is what remote storage holds of one tenant: the names of
// its files and the timelines that have an index.
type remoteTenant struct {
	files     []string
	timelines []id.TimelineID
}

// restore brings into the work directory every tenant and timeline that
// remote storage holds and the work directory lacks: the page server that
// lost its disk, or a new one on the same remote storage. A timeline's
// layer files are downloaded and checked against the index before its
// metadata is written, and a tenant's settings come last, so an
// interrupted restore is resumed by the next one.
func (r *Repository) restore(ctx context.Context) error {
	objects, err := r.remote.List(ctx, remoteTenantsDir+"/")
	if err != nil {
		return err
	}
	tenants := map[id.TenantID]*remoteTenant{}
	for _, p := range objects {
		parts := strings.Split(p, "/")
		if len(parts) < 3 {
			continue
		}
		tid, err := id.ParseTenantID(parts[1])
		if err != nil {
			continue
		}
		rt := tenants[tid]
		if rt == nil {
			rt = &remoteTenant{}
			tenants[tid] = rt
		}
		switch {
		case len(parts) == 3:
			rt.files = append(rt.files, parts[2])
		case len(parts) == 5 && parts[2] == "timelines" && parts[4] == indexFile:
			if tlid, err := id.ParseTimelineID(parts[3]); err == nil {
				rt.timelines = append(rt.timelines, tlid)
			}
		}
	}
	ids := make([]id.TenantID, 0, len(tenants))
	for tid := range tenants {
		ids = append(ids, tid)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i].String() < ids[j].String() })
	for _, tid := range ids {
		if err := r.restoreTenant(ctx, tid, tenants[tid]); err != nil {
			return fmt.Errorf("tenant %s: %w", tid, err)
		}
	}
	return nil
}

// restoreTenant restores what the work directory lacks of one tenant.
func (r *Repository) restoreTenant(ctx context.Context, tid id.TenantID, rt *remoteTenant) error {
	dir := r.tenantDir(tid)
	if _, err := r.fs.Stat(dir + deletedSuffix); err == nil {
		return nil // being deleted: Tenants finishes it, remote objects too
	}
	if !slices.Contains(rt.files, tenantConfigFile) {
		r.log.Warn().Str("tenant", tid.String()).Msg("remote storage has timelines of a tenant without its settings: not restored")
		return nil
	}
	restored := 0
	for _, tlid := range rt.timelines {
		tldir := filepath.Join(dir, "timelines", tlid.String())
		if _, err := r.fs.Stat(filepath.Join(tldir, metadataFile)); err == nil {
			continue
		}
		if _, err := r.fs.Stat(tldir + deletedSuffix); err == nil {
			continue // being deleted: its owner finishes it, remote objects too
		}
		if err := vfs.MkdirDurable(r.fs, tldir, 0o755); err != nil {
			return err
		}
		if err := r.restoreTimeline(ctx, tid, tlid, tldir); err != nil {
			return fmt.Errorf("timeline %s: %w", tlid, err)
		}
		restored++
	}
	if err := vfs.MkdirDurable(r.fs, filepath.Join(dir, "timelines"), 0o755); err != nil {
		return err
	}
	// Other files first, the settings last: they make the tenant exist.
	sort.Slice(rt.files, func(i, j int) bool { return rt.files[j] == tenantConfigFile })
	for _, name := range rt.files {
		if name != tenantConfigFile && !slices.Contains(r.cfg.TenantFiles, name) {
			continue
		}
		file := filepath.Join(dir, name)
		if _, err := r.fs.Stat(file); err == nil {
			continue
		}
		var buf bytes.Buffer
		if err := r.download(ctx, remoteTenantPrefix(tid)+name, &buf); err != nil {
			return err
		}
		if _, err := vfs.WriteFileAtomic(r.fs, file, buf.Bytes(), 0o600); err != nil {
			return err
		}
	}
	if restored > 0 {
		r.log.Info().Str("tenant", tid.String()).Int("timelines", restored).Msg("restored from remote storage")
	}
	return nil
}

// restoreTimeline downloads a timeline's index and layer files into dir
// and writes its metadata.
func (r *Repository) restoreTimeline(ctx context.Context, tid id.TenantID, tlid id.TimelineID, dir string) error {
	prefix := remoteTimelinePrefix(tid, tlid)
	var buf bytes.Buffer
	if err := r.download(ctx, prefix+indexFile, &buf); err != nil {
		return err
	}
	idx, err := decodeIndex(buf.Bytes(), prefix+indexFile)
	if err != nil {
		return err
	}
	for _, name := range idx.Metadata.Layers {
		if _, err := layer.ParseFileName(name); err != nil {
			return &CorruptionError{File: remoteName(prefix + indexFile), Offset: -1, Err: err}
		}
		if err := r.downloadLayer(ctx, prefix+name, filepath.Join(dir, name), idx.LayerFiles[name]); err != nil {
			return err
		}
	}
	if err := vfs.SyncDir(r.fs, dir); err != nil {
		return err
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
