package pageserver

import (
	"os"
	"runtime/debug"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/memstat"
)

// MemoryStatus is what the page server holds in memory, in bytes, each
// amount next to its limit where one exists. RSS is what the operating
// system charges the process; the Go heap is most of it (the block cache
// included: scripts/build builds without cgo, with which pebble would
// allocate it with C malloc, outside the heap), the rest is the Go
// runtime's own and what the collector has not returned yet.
type MemoryStatus struct {
	RSSBytes int64 `json:"rss_bytes"`
	// GoHeapBytes is the memory of Go heap objects, live or not yet
	// swept; GoRuntimeBytes is all the memory the Go runtime holds from
	// the operating system; GoMemoryLimit is GOMEMLIMIT (0: none).
	GoHeapBytes    int64 `json:"go_heap_bytes"`
	GoRuntimeBytes int64 `json:"go_runtime_bytes"`
	GoMemoryLimit  int64 `json:"go_memory_limit"`
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
}

// memoryOverhead is what DefaultMemoryLimit allows besides the bounded
// caches: per-connection buffers, decoded WAL in flight, redo requests,
// layer indexes, the runtime's own (measured under pgbench: the heap's
// live set was the block cache, about 20 MiB of buffers and a few MiB of
// each of the rest).
const memoryOverhead = 128 << 20

// DefaultMemoryLimit is the soft memory limit a page server with the
// default caches gets when memory_limit is 0: their limits plus
// memoryOverhead.
func DefaultMemoryLimit() int64 {
	c := repo.DefaultConfig("")
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
		limit = DefaultMemoryLimit()
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
		GoRuntimeBytes:     p.GoRuntime,
		GoMemoryLimit:      p.GoLimit,
		OpenLayerBytes:     rs.OpenLayerBytes,
		FrozenLayerBytes:   rs.FrozenLayerBytes,
		InMemoryLayerLimit: rs.InMemoryLayerLimit,
		PageCacheBytes:     rs.PageCacheBytes,
		PageCacheLimit:     rs.PageCacheLimit,
		BlockCacheBytes:    rs.BlockCacheBytes,
		BlockCacheLimit:    rs.BlockCacheLimit,
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
	descMemory      = prometheus.NewDesc("zenith_pageserver_memory_bytes", "Memory the page server holds, by what holds it: go_heap, in_memory_layers_open, in_memory_layers_frozen, page_cache, block_cache, wal_in_flight (received, not yet ingested).", []string{"kind"}, nil)
	descMemoryLimit = prometheus.NewDesc("zenith_pageserver_memory_limit_bytes", "Limit of each bounded kind of memory: in_memory_layers (open and frozen together), page_cache, block_cache.", []string{"kind"}, nil)
)

func (c memoryCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descMemory
	ch <- descMemoryLimit
}

func (c memoryCollector) Collect(ch chan<- prometheus.Metric) {
	m := c.s.memoryStatus()
	for kind, v := range map[string]int64{
		"go_heap": m.GoHeapBytes, "in_memory_layers_open": m.OpenLayerBytes, "in_memory_layers_frozen": m.FrozenLayerBytes,
		"page_cache": m.PageCacheBytes, "block_cache": m.BlockCacheBytes, "wal_in_flight": m.WALInFlightBytes,
	} {
		ch <- prometheus.MustNewConstMetric(descMemory, prometheus.GaugeValue, float64(v), kind)
	}
	for kind, v := range map[string]int64{
		"in_memory_layers": m.InMemoryLayerLimit, "page_cache": m.PageCacheLimit, "block_cache": m.BlockCacheLimit,
	} {
		ch <- prometheus.MustNewConstMetric(descMemoryLimit, prometheus.GaugeValue, float64(v), kind)
	}
}
