package control

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/zenithdb/zenith/repo/auth"
	"github.com/zenithdb/zenith/safekeeper"
)

// processMemory is what a running page server or safekeeper reports of
// its own memory, in bytes; limits are 0 where none applies.
type processMemory struct {
	RSS                int64 `json:"rss_bytes"`
	GoHeap             int64 `json:"go_heap_bytes"`
	GoMemoryLimit      int64 `json:"go_memory_limit,omitempty"`
	InMemoryLayers     int64 `json:"in_memory_layer_bytes,omitempty"`
	InMemoryLayerLimit int64 `json:"in_memory_layer_limit,omitempty"`
	PageCache          int64 `json:"page_cache_bytes,omitempty"`
	PageCacheLimit     int64 `json:"page_cache_limit,omitempty"`
	BlockCache         int64 `json:"block_cache_bytes,omitempty"`
	BlockCacheLimit    int64 `json:"block_cache_limit,omitempty"`
	WALInFlight        int64 `json:"wal_in_flight_bytes,omitempty"`
	OpenLayerFiles     int64 `json:"open_layer_files,omitempty"`
	MaxOpenLayerFiles  int64 `json:"max_open_layer_files,omitempty"`
	// DiskFull says why the process's writes fail for a full disk, and
	// since when; empty while they succeed.
	DiskFull      string `json:"disk_full,omitempty"`
	DiskFullSince string `json:"disk_full_since,omitempty"`
	// WALStoreError says which of the page server's WAL stores fails
	// (and why, since when); empty while they work.
	WALStoreError      string `json:"wal_store_error,omitempty"`
	WALStoreErrorSince string `json:"wal_store_error_since,omitempty"`
	// Stalled says which of the page server's timelines has a write to
	// disk in progress for longer than its stall_threshold (a disk that
	// does not answer), since when, and how many are; empty while none.
	Stalled          string `json:"stalled,omitempty"`
	StalledSince     string `json:"stalled_since,omitempty"`
	StalledTimelines string `json:"stalled_timelines,omitempty"`
	// Error says why the process did not report (it runs but does not
	// answer).
	Error string `json:"error,omitempty"`
}

// pageserverMemory asks the page server's status command for its memory.
func (e *Env) pageserverMemory(ctx context.Context) *processMemory {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	st, err := e.Pageserver().Status(ctx)
	if err != nil {
		return &processMemory{Error: err.Error()}
	}
	var m processMemory
	var bad []string
	for _, f := range []struct {
		col string
		v   *int64
	}{
		{"rss_bytes", &m.RSS}, {"go_heap_bytes", &m.GoHeap},
		{"in_memory_layer_bytes", &m.InMemoryLayers}, {"in_memory_layer_limit", &m.InMemoryLayerLimit},
		{"page_cache_bytes", &m.PageCache}, {"page_cache_limit", &m.PageCacheLimit},
		{"block_cache_bytes", &m.BlockCache}, {"block_cache_limit", &m.BlockCacheLimit},
		{"wal_in_flight_bytes", &m.WALInFlight}, {"go_memory_limit", &m.GoMemoryLimit},
		{"open_layer_files", &m.OpenLayerFiles}, {"max_open_layer_files", &m.MaxOpenLayerFiles},
	} {
		v, err := strconv.ParseInt(st[f.col], 10, 64)
		if err != nil {
			bad = append(bad, f.col)
		}
		*f.v = v
	}
	if bad != nil {
		return &processMemory{Error: "status does not report " + strings.Join(bad, ", ") + " (an older page server?)"}
	}
	m.DiskFull, m.DiskFullSince = st["disk_full"], st["disk_full_since"]
	m.WALStoreError, m.WALStoreErrorSince = st["wal_store_error"], st["wal_store_error_since"]
	m.Stalled, m.StalledSince, m.StalledTimelines = st["stalled"], st["stalled_since"], st["stalled_timelines"]
	return &m
}

// safekeeperMemory asks safekeeper n's HTTP API for its memory.
func (e *Env) safekeeperMemory(ctx context.Context, n int) *processMemory {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	addr := e.Config.SafekeeperList()[n-1].ListenHTTP
	client, scheme, err := e.httpClient(5 * time.Second)
	if err != nil {
		return &processMemory{Error: err.Error()}
	}
	opts, err := e.cliClient()
	if err != nil {
		return &processMemory{Error: err.Error()}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, scheme+addr+"/v1/memory", nil)
	if err != nil {
		return &processMemory{Error: err.Error()}
	}
	auth.SetBearer(req, opts.Token)
	resp, err := client.Do(req)
	if err != nil {
		return &processMemory{Error: err.Error()}
	}
	defer resp.Body.Close()
	var sm safekeeper.Memory
	if resp.StatusCode != http.StatusOK {
		return &processMemory{Error: fmt.Sprintf("GET %s/v1/memory: %s", addr, resp.Status)}
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&sm); err != nil {
		return &processMemory{Error: fmt.Sprintf("GET %s/v1/memory: %v", addr, err)}
	}
	return &processMemory{RSS: sm.RSSBytes, GoHeap: sm.GoHeapBytes, DiskFull: sm.DiskFull, DiskFullSince: sm.DiskFullSince}
}

// diskLines are the lines of zenith status about a full disk, a failing
// WAL store and a stalled write, none if the process's writes succeed.
func (m *processMemory) diskLines() []string {
	if m == nil {
		return nil
	}
	var out []string
	if m.DiskFull != "" {
		out = append(out, fmt.Sprintf("DISK FULL since %s: %s (writes wait; free space and they go on)", m.DiskFullSince, m.DiskFull))
	}
	if m.WALStoreError != "" {
		out = append(out, fmt.Sprintf("WAL STORE FAILING since %s: %s (cut back to its synced end; streaming is retried until it takes writes again)", m.WALStoreErrorSince, m.WALStoreError))
	}
	if m.Stalled != "" {
		others := ""
		if n, err := strconv.Atoi(m.StalledTimelines); err == nil && n > 1 {
			others = fmt.Sprintf(", and %d other timelines", n-1)
		}
		out = append(out, fmt.Sprintf("STALLED since %s: %s%s (the disk has not answered; nothing of it is acknowledged until it does; other timelines go on)", m.StalledSince, m.Stalled, others))
	}
	return out
}

// String is the memory line of zenith status.
func (m *processMemory) String() string {
	if m.Error != "" {
		return "not reported: " + m.Error
	}
	s := fmt.Sprintf("RSS %s, Go heap %s", formatBytes(m.RSS), formatBytes(m.GoHeap))
	if m.GoMemoryLimit > 0 {
		s += fmt.Sprintf(" (Go memory limit %s)", formatBytes(m.GoMemoryLimit))
	}
	if m.InMemoryLayerLimit > 0 {
		s += fmt.Sprintf("; in-memory layers %s of %s, page cache %s of %s, block cache %s of %s, WAL in flight %s",
			formatBytes(m.InMemoryLayers), formatBytes(m.InMemoryLayerLimit), formatBytes(m.PageCache), formatBytes(m.PageCacheLimit),
			formatBytes(m.BlockCache), formatBytes(m.BlockCacheLimit), formatBytes(m.WALInFlight))
	}
	if m.MaxOpenLayerFiles > 0 {
		s += fmt.Sprintf("; layer files open %d of %d", m.OpenLayerFiles, m.MaxOpenLayerFiles)
	}
	return s
}
