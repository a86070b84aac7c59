package repo

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/layer"
)

// fetchTimeout bounds the download of one layer file at a read.
const fetchTimeout = 5 * time.Minute

// ErrLayerNotRemote: a layer file missing from the local disk that remote
// storage does not hold either.
var ErrLayerNotRemote = errors.New("layer file is neither on the local disk nor in remote storage")

// fetchLayer is the layer Env's Fetch: it downloads the missing layer
// file at path (<workdir>/tenants/<tenant>/timelines/<timeline>/<layer>)
// from the object the timeline's remote index lists, checking its size
// and checksum. It runs when a read first opens a layer that an attach
// did not download, or that was evicted.
func (r *Repository) fetchLayer(path string) error {
	rel, err := filepath.Rel(r.tenantsDir(), path)
	if err != nil {
		return err
	}
	parts := strings.Split(filepath.ToSlash(rel), "/")
	if len(parts) != 4 || parts[1] != "timelines" {
		return fmt.Errorf("%s: %w", path, ErrLayerNotRemote)
	}
	tid, err := id.ParseTenantID(parts[0])
	if err != nil {
		return err
	}
	tlid, err := id.ParseTimelineID(parts[2])
	if err != nil {
		return err
	}
	name := parts[3]
	r.mu.Lock()
	tn := r.tenants[tid]
	r.mu.Unlock()
	if tn == nil {
		return fmt.Errorf("tenant %s: %w", tid, ErrTenantNotFound)
	}
	tn.mu.Lock()
	e := tn.timelines[tlid]
	tn.mu.Unlock()
	if e == nil || e.tl == nil {
		return fmt.Errorf("timeline %s of tenant %s: %w", tlid, tid, ErrTimelineNotFound)
	}
	tl := e.tl
	ctx, cancel := context.WithTimeout(context.Background(), fetchTimeout)
	defer cancel()
	u := &tl.upload
	u.mu.Lock()
	if !u.known {
		if err := tl.readRemoteIndex(ctx); err != nil {
			u.mu.Unlock()
			return err
		}
	}
	up, ok := u.uploaded[name]
	u.mu.Unlock()
	if !ok {
		return fmt.Errorf("%s: %w", path, ErrLayerNotRemote)
	}
	start := time.Now()
	p := up.object(remoteTimelinePrefix(tid, tlid), name)
	if err := r.downloadLayer(ctx, p, path, up.remoteLayer); err != nil {
		return err
	}
	r.remoteStats.LayerFetches.Add(1)
	tl.log.Debug().Str("layer", name).Int64("bytes", up.Size).Dur("took", time.Since(start)).Msg("fetched layer file from remote storage")
	return nil
}

// localLayer is a layer file on the local disk, for eviction.
type localLayer struct {
	f    *layer.File
	size int64
	used time.Time
	// uploaded is set when remote storage holds the file as it is here.
	uploaded bool
}

// Evict brings the layer files on the local disk within the disk budget
// (Config.LayerDiskBudget; 0: none): it deletes, least recently read
// first, layer files that remote storage holds, until the rest fit. A
// read that needs an evicted layer fetches it again. It returns how many
// it evicted.
func (r *Repository) Evict() (int, error) {
	budget := r.cfg.LayerDiskBudget
	if budget <= 0 || r.remote == nil {
		return 0, nil
	}
	var local []localLayer
	var total int64
	for _, tl := range r.loadedTimelines() {
		u := &tl.upload
		u.mu.Lock()
		for _, l := range tl.files().Layers() {
			f := l.(*layer.File)
			st, err := r.fs.Stat(f.Path())
			if errors.Is(err, fs.ErrNotExist) {
				continue
			}
			if err != nil {
				u.mu.Unlock()
				return 0, err
			}
			up, ok := u.uploaded[f.Desc().FileName()]
			local = append(local, localLayer{f: f, size: st.Size(), used: f.LastUsed(), uploaded: ok && up.file == f})
			total += st.Size()
		}
		u.mu.Unlock()
	}
	if total <= budget {
		return 0, nil
	}
	slices.SortStableFunc(local, func(a, b localLayer) int { return a.used.Compare(b.used) })
	n := 0
	for _, l := range local {
		if total <= budget {
			break
		}
		if !l.uploaded {
			continue
		}
		if err := l.f.Evict(); err != nil {
			return n, err
		}
		total -= l.size
		n++
		r.remoteStats.Evictions.Add(1)
	}
	if n > 0 {
		r.log.Debug().Int("evicted", n).Int64("local_bytes", total).Int64("budget", budget).Msg("evicted layer files")
	}
	return n, nil
}
