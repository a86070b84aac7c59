package pageserver

import (
	"os"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zenithdb/zenith/repo/memstat"
)

// MemoryStatus is what the page server holds in memory, in bytes, each
// amount next to its limit where one exists, and its open layer files. RSS is what the operating
// system charges the process; the Go heap is most of it (the block cache
// included: scripts/build builds without cgo, with which pebble would
// allocate it with C malloc, outside the heap), the rest is the Go
// runtime's own and what the collector has not returned yet.
type MemoryStatus struct {
	RSSBytes int64 `json:"rss_bytes"`
	// GoHeapBytes is the memory of Go heap objects, live or not yet
	// swept; GoHeapLiveBytes is what the last collection found live (the
	// caches, layers and buffers, without garbage: with the heap at
	// GoMemoryLimit, RSS stays there and only this shows growth);
	// GoHeapGoalBytes is the heap size at which the next collection
	// starts (with GOGC=100 twice the live heap, capped to keep the
	// runtime under GoMemoryLimit): RSS rises towards it after the live
	// heap grows. GoRuntimeBytes is all the memory the Go runtime holds
	// from the operating system; GoMemoryLimit is GOMEMLIMIT (0: none).
	// GoGCCycles counts the collections so far (the live heap and the
	// goal change at each).
	GoHeapBytes     int64 `json:"go_heap_bytes"`
	GoHeapLiveBytes int64 `json:"go_heap_live_bytes"`
	GoHeapGoalBytes int64 `json:"go_heap_goal_bytes"`
	GoGCCycles      int64 `json:"go_gc_cycles"`
	GoRuntimeBytes  int64 `json:"go_runtime_bytes"`
	GoMemoryLimit   int64 `json:"go_memory_limit"`
	// In-memory layers of every timeline: the open ones taking WAL and the
	// frozen ones waiting for their flush, together at most the limit.
	OpenLayerBytes     int64 `json:"open_layer_bytes"`
	FrozenLayerBytes   int64 `json:"frozen_layer_bytes"`
	InMemoryLayerLimit int64 `json:"in_memory_layer_limit"`
	PageCacheBytes     int64 `json:"page_cache_bytes"`
	PageCacheLimit     int64 `json:"page_cache_limit"`
	BlockCacheBytes    int64 `json:"block_cache_bytes"`
	BlockCacheLimit    int64 `json:"block_cache_limit"`
	// WALInFlightBytes is the WAL received and not yet ingested, over
	// every timeline.
	WALInFlightBytes int64 `json:"wal_in_flight_bytes"`
	// OpenLayerFiles is how many layer files are open, each a file
	// descriptor, next to max_open_layer_files; LayerFileOpens counts the
	// opens since the server started (a fast-growing count with the open
	// files at the limit says the limit is too small for what is read).
	OpenLayerFiles    int   `json:"open_layer_files"`
	MaxOpenLayerFiles int   `json:"max_open_layer_files"`
	LayerFileOpens    int64 `json:"layer_file_opens"`
}

// memoryOverhead is what DerivedMemoryLimit allows besides the bounded
// caches: per-connection buffers, decoded WAL in flight, redo requests,
// layer indexes, the runtime's own (measured under pgbench: the heap's
// live set was the block cache, about 20 MiB of buffers and a few MiB of
// each of the rest).
const memoryOverhead = 128 << 20

// DerivedMemoryLimit is the soft memory limit the page server takes
// when memory_limit is 0: the limits of its bounded caches (page cache,
// block cache, in-memory layers) plus memoryOverhead.
func (c Config) DerivedMemoryLimit() int64 {
	return c.PageCacheSize + c.BlockCacheSize + c.InMemoryLayerLimit + memoryOverhead
}

// SetMemoryLimit applies cfg's memory_limit to the Go runtime of this
// process, unless GOMEMLIMIT is set, and returns the limit in force (0:
// none). The page server's own process calls it; a library user decides
// for its process.
func SetMemoryLimit(cfg Config) int64 {
	if os.Getenv("GOMEMLIMIT") != "" {
		return debug.SetMemoryLimit(-1)
	}
	limit := cfg.MemoryLimit
	switch limit {
	case -1:
		return 0
	case 0:
		limit = cfg.DerivedMemoryLimit()
	}
	debug.SetMemoryLimit(limit)
	return limit
}

// InMemoryLayerBytes is the bytes of open and frozen in-memory layers.
func (m MemoryStatus) InMemoryLayerBytes() int64 { return m.OpenLayerBytes + m.FrozenLayerBytes }

// memoryStatus measures what the server holds in memory now.
func (s *Server) memoryStatus() MemoryStatus {
	p := memstat.Read()
	rs := s.repo.MemoryStats()
	m := MemoryStatus{
		RSSBytes:           p.RSS,
		GoHeapBytes:        p.GoHeap,
		GoHeapLiveBytes:    p.GoHeapLive,
		GoHeapGoalBytes:    p.GoHeapGoal,
		GoGCCycles:         p.GoGCCycles,
		GoRuntimeBytes:     p.GoRuntime,
		GoMemoryLimit:      p.GoLimit,
		OpenLayerBytes:     rs.OpenLayerBytes,
		FrozenLayerBytes:   rs.FrozenLayerBytes,
		InMemoryLayerLimit: rs.InMemoryLayerLimit,
		PageCacheBytes:     rs.PageCacheBytes,
		PageCacheLimit:     rs.PageCacheLimit,
		BlockCacheBytes:    rs.BlockCacheBytes,
		BlockCacheLimit:    rs.BlockCacheLimit,
		OpenLayerFiles:     rs.OpenLayerFiles,
		MaxOpenLayerFiles:  rs.MaxOpenLayerFiles,
		LayerFileOpens:     rs.LayerFileOpens,
	}
	for _, t := range s.tenants.list() {
		for _, info := range t.tn.Timelines() {
			if w := t.walOf(info.ID); w != nil {
				if st := w.Status(); st.Received > st.Ingested {
					m.WALInFlightBytes += int64(st.Received - st.Ingested)
				}
			}
		}
	}
	return m
}

// memoryCollector exports MemoryStatus at scrape time.
type memoryCollector struct{ s *Server }

var (
	descMemory      = prometheus.NewDesc("zenith_pageserver_memory_bytes", "Memory the page server holds, by what holds it: go_heap, go_heap_live (found live by the last collection), in_memory_layers_open, in_memory_layers_frozen, page_cache, block_cache, wal_in_flight (received, not yet ingested).", []string{"kind"}, nil)
	descMemoryLimit = prometheus.NewDesc("zenith_pageserver_memory_limit_bytes", "Limit of each bounded kind of memory: in_memory_layers (open and frozen together), page_cache, block_cache.", []string{"kind"}, nil)
	descOpenFiles   = prometheus.NewDesc("zenith_pageserver_open_layer_files", "Layer files open now, each a file descriptor.", nil, nil)
	descFilesLimit  = prometheus.NewDesc("zenith_pageserver_open_layer_files_limit", "Layer files that may be open at once (max_open_layer_files).", nil, nil)
	descDiskFull    = prometheus.NewDesc("zenith_pageserver_disk_full", "1 while writes of layer files, metadata or the WAL store fail for a full disk (ENOSPC, EDQUOT); ingest waits meanwhile.", nil, nil)
	descDiskErrors  = prometheus.NewDesc("zenith_pageserver_disk_full_errors_total", "Writes that failed for a full disk.", nil, nil)
	descFileOpens   = prometheus.NewDesc("zenith_pageserver_layer_file_opens_total", "Layer files opened for reading; past the limit each open closes the least recently read file.", nil, nil)
)

func (c memoryCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descMemory
	ch <- descMemoryLimit
	ch <- descOpenFiles
	ch <- descFilesLimit
	ch <- descFileOpens
	ch <- descDiskFull
	ch <- descDiskErrors
}

func (c memoryCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.s.memoryStatus()
	for kind, v := range map[string]int64{
		"go_heap": m.GoHeapBytes, "go_heap_live": m.GoHeapLiveBytes, "in_memory_layers_open": m.OpenLayerBytes, "in_memory_layers_frozen": m.FrozenLayerBytes,
		"page_cache": m.PageCacheBytes, "block_cache": m.BlockCacheBytes, "wal_in_flight": m.WALInFlightBytes,
	} {
		ch <- prometheus.MustNewConstMetric(descMemory, prometheus.GaugeValue, float64(v), kind)
	}
	for kind, v := range map[string]int64{
		"in_memory_layers": m.InMemoryLayerLimit, "page_cache": m.PageCacheLimit, "block_cache": m.BlockCacheLimit,
	} {
		ch <- prometheus.MustNewConstMetric(descMemoryLimit, prometheus.GaugeValue, float64(v), kind)
	}
	ch <- prometheus.MustNewConstMetric(descOpenFiles, prometheus.GaugeValue, float64(m.OpenLayerFiles))
	ch <- prometheus.MustNewConstMetric(descFilesLimit, prometheus.GaugeValue, float64(m.MaxOpenLayerFiles))
	ch <- prometheus.MustNewConstMetric(descFileOpens, prometheus.CounterValue, float64(m.LayerFileOpens))
	reason, _, errs := c.s.diskFull()
	full := 0.0
	if reason != "" {
		full = 1
	}
	ch <- prometheus.MustNewConstMetric(descDiskFull, prometheus.GaugeValue, full)
	ch <- prometheus.MustNewConstMetric(descDiskErrors, prometheus.CounterValue, float64(errs))
}
