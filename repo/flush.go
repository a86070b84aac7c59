package repo

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/zenithdb/zenith/repo/layer"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/vfs"
)

// Flush freezes the open in-memory layer and writes every frozen layer to
// a delta layer file, advancing the disk-consistent LSN to the last record
// LSN. On error, what was not flushed stays in memory, readable, and the
// next flush retries it.
func (tl *Timeline) Flush(ctx context.Context) error {
	tl.Freeze()
	return tl.flushFrozen(ctx)
}

// flushFrozen writes the frozen layers, oldest first.
func (tl *Timeline) flushFrozen(ctx context.Context) error {
	tl.flushMu.Lock()
	defer tl.flushMu.Unlock()
	for {
		if err := ctx.Err(); err != nil {
			return err
		}
		tl.mu.RLock()
		if len(tl.frozen) == 0 {
			tl.mu.RUnlock()
			return nil
		}
		fr := tl.frozen[0]
		tl.mu.RUnlock()
		if err := tl.flushOne(fr); err != nil {
			return err
		}
	}
}

// flushOne writes one frozen layer (nothing, if it is empty), fsyncs the
// file and the directory, then commits the metadata.
func (tl *Timeline) flushOne(fr frozenLayer) error {
	return tl.tenant.repo.disk.Note(tl.writeFrozen(fr))
}

// writeFrozen is flushOne without noting a full disk.
func (tl *Timeline) writeFrozen(fr frozenLayer) error {
	repo := tl.tenant.repo
	lsns := fr.mem.Desc().LSNs
	var f *layer.File
	if !fr.mem.Empty() {
		var err error
		end := tl.flushing.Begin(OpLayerWrite)
		f, err = fr.mem.WriteDelta(repo.env, tl.dir)
		if err == nil {
			if err = vfs.SyncDir(repo.fs, tl.dir); err != nil {
				tl.removeUnlisted(f)
			}
		}
		end()
		if err != nil {
			return fmt.Errorf("flush timeline %s %v: %w", tl.id, lsns, err)
		}
	}
	disk := lsns.End - 1
	pitr := time.Duration(tl.tenant.Config().PITRInterval)
	end := tl.flushing.Begin(OpMetadataWrite)
	defer end()
	listed, err := tl.commit(func(d *durable) {
		if f != nil {
			d.layers = d.layers.With([]layer.Layer{f}, nil)
		}
		d.diskConsistentLSN, d.prevRecordLSN = disk, fr.prev
		d.flushTimes = addFlushTime(d.flushTimes, flushTime{repo.now(), disk}, pitr)
	}, func() {
		// Delete, not reslice: the backing array would keep the
		// flushed layer, and all its values, alive.
		tl.frozen = slices.Delete(tl.frozen, 0, 1)
		repo.mem.frozen.Add(-fr.mem.Size())
	})
	if err != nil {
		if !listed && f != nil {
			tl.removeUnlisted(f)
		}
		return fmt.Errorf("flush timeline %s %v: %w", tl.id, lsns, err)
	}
	tl.log.Debug().Stringer("disk_consistent_lsn", disk).Int64("bytes", fr.mem.Size()).Msg("flushed in-memory layer")
	return nil
}

// The steps of a flush, as FlushStalled names them.
const (
	// OpLayerWrite writes a frozen in-memory layer to a delta layer
	// file and fsyncs it and its directory.
	OpLayerWrite = "layer file write and fsync"
	// OpMetadataWrite replaces the timeline's metadata file (written,
	// fsynced, renamed) to list the new layer file.
	OpMetadataWrite = "metadata write and fsync"
)

// FlushStalled returns the step of the timeline's flush in progress, and
// since when, if it began more than threshold before now; "" otherwise.
// A disk that does not answer leaves a flush waiting in the kernel with
// no error to report: this is how it shows. Nothing of the flush counts
// (the disk-consistent LSN stays) until it returns.
func (tl *Timeline) FlushStalled(now time.Time, threshold time.Duration) (op string, since time.Time) {
	return tl.flushing.Stalled(now, threshold)
}

// removeUnlisted removes a new layer file that no metadata lists.
func (tl *Timeline) removeUnlisted(f *layer.File) {
	if err := f.Remove(); err != nil {
		// Harmless: the next load removes files the metadata does not list.
		tl.log.Warn().Err(err).Str("file", f.Path()).Msg("remove unused layer file")
	}
}

// addFlushTime appends a sample and drops those GC no longer needs: it
// keeps every sample inside the PITR window and the newest one before it.
func addFlushTime(ts []flushTime, t flushTime, pitr time.Duration) []flushTime {
	ts = append(ts, t)
	if pitr == 0 {
		return ts[len(ts)-1:]
	}
	horizon := t.Time.Add(-pitr)
	first := 0
	for i, s := range ts {
		if !s.Time.After(horizon) {
			first = i
		}
	}
	return ts[first:]
}

// pitrCutoff is the highest LSN that was on disk before the PITR window:
// history at or above it is kept. Without a sample that old, nothing may
// go (0).
func pitrCutoff(ts []flushTime, now time.Time, pitr time.Duration) pgdata.LSN {
	if pitr == 0 {
		return pgdata.MaxLSN
	}
	horizon := now.Add(-pitr)
	var lsn pgdata.LSN
	for _, s := range ts {
		if !s.Time.After(horizon) {
			lsn = max(lsn, s.LSN)
		}
	}
	return lsn
}
