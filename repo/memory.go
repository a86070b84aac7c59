package repo

import "sync/atomic"

// memoryUse counts the bytes of every in-memory layer of a repository, the
// open ones and the frozen ones waiting for their flush, so that one limit
// (Config.InMemoryLayerLimit) bounds them across all tenants and timelines.
// A timeline's open layer alone is bounded by its tenant's checkpoint
// distance, which says nothing about how many timelines there are.
type memoryUse struct {
	open   atomic.Int64
	frozen atomic.Int64
}

// total is the bytes of open and frozen in-memory layers together.
func (m *memoryUse) total() int64 { return m.open.Load() + m.frozen.Load() }

// MemoryStats is what the repository holds in memory, each next to its
// limit.
type MemoryStats struct {
	// OpenLayerBytes and FrozenLayerBytes are the bytes of the in-memory
	// layers taking WAL and of those frozen and waiting for their flush;
	// together they stay within InMemoryLayerLimit (plus one record per
	// writing timeline).
	OpenLayerBytes     int64
	FrozenLayerBytes   int64
	InMemoryLayerLimit int64
	// PageCacheBytes is the memory of cached reconstructed pages, at most
	// PageCacheLimit.
	PageCacheBytes int64
	PageCacheLimit int64
	// BlockCacheBytes is the memory of cached layer-file blocks, at most
	// BlockCacheLimit (allocated outside the Go heap when cgo is on).
	BlockCacheBytes int64
	BlockCacheLimit int64
	// OpenLayerFiles is how many layer files are open (each a file
	// descriptor), at most MaxOpenLayerFiles unless more are being read
	// at once; LayerFileOpens counts the opens since the repository
	// opened, so its rate shows a limit too small for the working set.
	OpenLayerFiles    int
	MaxOpenLayerFiles int
	LayerFileOpens    int64
}

// MemoryStats reports what the repository holds in memory now.
func (r *Repository) MemoryStats() MemoryStats {
	fs := r.env.FileStats()
	return MemoryStats{
		OpenLayerBytes:     r.mem.open.Load(),
		FrozenLayerBytes:   r.mem.frozen.Load(),
		InMemoryLayerLimit: r.cfg.InMemoryLayerLimit,
		PageCacheBytes:     r.cache.bytes(),
		PageCacheLimit:     r.cfg.PageCacheSize,
		BlockCacheBytes:    r.env.BlockCacheBytes(),
		BlockCacheLimit:    r.cfg.BlockCacheSize,
		OpenLayerFiles:     fs.Open,
		MaxOpenLayerFiles:  fs.Limit,
		LayerFileOpens:     fs.Opens,
	}
}
