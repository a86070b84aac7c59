package safekeeper

import (
	"fmt"
	"net/http"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/zenithdb/zenith/repo/auth"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/memstat"
)

// metrics are the safekeeper's Prometheus metrics.
type metrics struct {
	reg         *prometheus.Registry
	walReceived prometheus.Counter
	walSent     prometheus.Counter
	// walFsync times the fsyncs of streamed WAL: the safekeeper's own
	// share of a commit's latency (docs/performance.md).
	walFsync prometheus.Histogram
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		walReceived: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "safekeeper_wal_received_bytes_total", Help: "WAL bytes received from computes."}),
		walSent: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "safekeeper_wal_sent_bytes_total", Help: "WAL bytes sent to page servers."}),
		walFsync: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name: "safekeeper_wal_fsync_seconds", Help: "Time of each fsync of WAL streamed from a compute.",
			Buckets: prometheus.ExponentialBuckets(50e-6, 2, 14)}),
	}
	m.reg.MustRegister(m.walReceived, m.walSent, m.walFsync, collectors.NewGoCollector(), memoryCollector{})
	return m
}

// Memory is the safekeeper's own memory, in bytes, as GET /v1/memory
// reports it.
type Memory struct {
	RSSBytes       int64 `json:"rss_bytes"`
	GoHeapBytes    int64 `json:"go_heap_bytes"`
	GoRuntimeBytes int64 `json:"go_runtime_bytes"`
	// DiskFull says why WAL writes fail for a full disk (ENOSPC,
	// EDQUOT), since when (RFC 3339); empty while they succeed.
	DiskFull      string `json:"disk_full,omitempty"`
	DiskFullSince string `json:"disk_full_since,omitempty"`
}

func readMemory() Memory {
	p := memstat.Read()
	return Memory{RSSBytes: p.RSS, GoHeapBytes: p.GoHeap, GoRuntimeBytes: p.GoRuntime}
}

// memoryCollector exports Memory at scrape time.
type memoryCollector struct{}

var descMemory = prometheus.NewDesc("safekeeper_memory_bytes", "Memory the safekeeper holds: rss (resident), go_heap (Go heap objects), go_runtime (all the Go runtime holds from the system).", []string{"kind"}, nil)

func (memoryCollector) Describe(ch chan<- *prometheus.Desc) { ch <- descMemory }

func (memoryCollector) Collect(ch chan<- prometheus.Metric) {
	m := readMemory()
	for kind, v := range map[string]int64{"rss": m.RSSBytes, "go_heap": m.GoHeapBytes, "go_runtime": m.GoRuntimeBytes} {
		ch <- prometheus.MustNewConstMetric(descMemory, prometheus.GaugeValue, float64(v), kind)
	}
}

// timelineCollector exports each timeline's LSNs and term.
type timelineCollector struct{ s *Safekeeper }

var (
	descFlush     = prometheus.NewDesc("safekeeper_flush_lsn", "End of the fsynced WAL.", []string{"tenant_id", "timeline_id"}, nil)
	descCommit    = prometheus.NewDesc("safekeeper_commit_lsn", "Quorum-durable LSN known here.", []string{"tenant_id", "timeline_id"}, nil)
	descPageserer = prometheus.NewDesc("safekeeper_pageserver_lsn", "The page server's reported consistent LSN.", []string{"tenant_id", "timeline_id"}, nil)
	descTerm      = prometheus.NewDesc("safekeeper_term", "Highest term voted for.", []string{"tenant_id", "timeline_id"}, nil)
	descPSGen     = prometheus.NewDesc("safekeeper_pageserver_generation", "Attach generation of the page server whose report safekeeper_pageserver_lsn is.", []string{"tenant_id", "timeline_id"}, nil)
	descStale     = prometheus.NewDesc("safekeeper_stale_pageserver_reports_total", "Flush reports of page servers of an older attach generation than the newest seen, ignored for WAL removal, since the safekeeper started.", []string{"tenant_id", "timeline_id"}, nil)
)

func (c timelineCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descFlush
	ch <- descCommit
	ch <- descPageserer
	ch <- descTerm
	ch <- descPSGen
	ch <- descStale
}

func (c timelineCollector) Collect(ch chan<- prometheus.Metric) {
	for _, tl := range c.s.Timelines() {
		st := tl.State()
		labels := []string{st.Tenant.String(), st.Timeline.String()}
		ch <- prometheus.MustNewConstMetric(descFlush, prometheus.GaugeValue, float64(st.FlushLSN), labels...)
		ch <- prometheus.MustNewConstMetric(descCommit, prometheus.GaugeValue, float64(st.CommitLSN), labels...)
		ch <- prometheus.MustNewConstMetric(descPageserer, prometheus.GaugeValue, float64(st.PageserverLSN), labels...)
		ch <- prometheus.MustNewConstMetric(descTerm, prometheus.GaugeValue, float64(st.Term), labels...)
		ch <- prometheus.MustNewConstMetric(descPSGen, prometheus.GaugeValue, float64(st.PageserverGeneration), labels...)
		ch <- prometheus.MustNewConstMetric(descStale, prometheus.CounterValue, float64(st.staleReports), labels...)
	}
}

// httpHandler serves the status endpoints and /metrics.
func (s *Safekeeper) httpHandler() http.Handler {
	mux := auth.NewMux(s.cfg.Verifier)
	s.routes(mux)
	return mux
}

// pathTimeline parses a route's {tenant} and {timeline}, answering 400
// itself if either is malformed.
func pathTimeline(w http.ResponseWriter, r *http.Request) (id.TenantID, id.TimelineID, bool) {
	tenant, err := id.ParseTenantID(r.PathValue("tenant"))
	if err != nil {
		auth.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return tenant, id.TimelineID{}, false
	}
	timeline, err := id.ParseTimelineID(r.PathValue("timeline"))
	if err != nil {
		auth.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
		return tenant, timeline, false
	}
	return tenant, timeline, true
}

// routes registers every HTTP route on mux with what it needs of a token
// when auth is on: /metrics is public (scraping); /v1/status (every
// tenant's timelines, which the peers poll), /v1/memory and the Go
// profiles under /debug/pprof/ need an admin token; a timeline's state, a
// token for its tenant.
func (s *Safekeeper) routes(mux *auth.Mux) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(timelineCollector{s},
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "safekeeper_disk_full",
			Help: "1 while WAL or control-file writes fail for a full disk (ENOSPC, EDQUOT); the computes' connections to this safekeeper end meanwhile and are retried.",
		}, func() float64 {
			if _, _, err := s.disk.Full(); err != nil {
				return 1
			}
			return 0
		}),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "safekeeper_disk_full_errors_total", Help: "Writes that failed for a full disk.",
		}, func() float64 {
			_, n, _ := s.disk.Full()
			return float64(n)
		}))
	mux.HandleFunc("GET /v1/status", auth.Admin, func(w http.ResponseWriter, r *http.Request) {
		out := []TimelineState{}
		for _, tl := range s.Timelines() {
			out = append(out, tl.State())
		}
		auth.WriteJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET /v1/timeline/{tenant}/{timeline}", auth.Tenant, func(w http.ResponseWriter, r *http.Request) {
		tenant, timeline, ok := pathTimeline(w, r)
		if !ok {
			return
		}
		tl, err := s.Timeline(tenant, timeline, false)
		if err != nil || tl == nil {
			auth.WriteJSON(w, http.StatusNotFound, map[string]string{"error": "no such timeline on this safekeeper"})
			return
		}
		auth.WriteJSON(w, http.StatusOK, tl.State())
	})
	mux.HandleFunc("DELETE /v1/timeline/{tenant}/{timeline}", auth.Admin, func(w http.ResponseWriter, r *http.Request) {
		tenant, timeline, ok := pathTimeline(w, r)
		if !ok {
			return
		}
		found, err := s.DeleteTimeline(tenant, timeline)
		if err != nil {
			auth.WriteJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
			return
		}
		auth.WriteJSON(w, http.StatusOK, map[string]bool{"deleted": found})
	})
	mux.HandleFunc("PUT /v1/tenant/{tenant}/pageserver_generation/{generation}", auth.Admin, func(w http.ResponseWriter, r *http.Request) {
		tenant, err := id.ParseTenantID(r.PathValue("tenant"))
		if err != nil {
			auth.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": err.Error()})
			return
		}
		gen, err := strconv.ParseUint(r.PathValue("generation"), 10, 32)
		if err != nil || gen == 0 {
			auth.WriteJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("generation %q: want a positive decimal number", r.PathValue("generation"))})
			return
		}
		changed := 0
		for _, tl := range s.Timelines() {
			if tl.Tenant != tenant {
				continue
			}
			ok, err := tl.AnnouncePageserverGeneration(uint32(gen))
			if err != nil {
				auth.WriteJSON(w, http.StatusInternalServerError, map[string]string{"error": err.Error()})
				return
			}
			if ok {
				changed++
			}
		}
		auth.WriteJSON(w, http.StatusOK, map[string]int{"timelines": changed})
	})
	s.recoveryRoutes(mux)
	mux.HandleFunc("GET /v1/memory", auth.Admin, func(w http.ResponseWriter, r *http.Request) {
		m := readMemory()
		if since, _, err := s.disk.Full(); err != nil {
			m.DiskFull, m.DiskFullSince = err.Error(), since.UTC().Format(time.RFC3339)
		}
		auth.WriteJSON(w, http.StatusOK, m)
	})
	mux.Handle("GET /metrics", auth.Public, promhttp.HandlerFor(prometheus.Gatherers{s.metrics.reg, reg}, promhttp.HandlerOpts{}))
	auth.HandlePprof(mux)
}
