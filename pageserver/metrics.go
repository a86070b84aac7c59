package pageserver

import (
	"context"
	"os"
	"path/filepath"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/layer"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/value"
)

// metrics are the page server's Prometheus metrics, in a registry of its
// own (so that several servers in one test process do not collide).
type metrics struct {
	reg *prometheus.Registry

	// pageRequests counts page-stream requests by kind and outcome.
	pageRequests *prometheus.CounterVec
	// getPageSeconds is the latency of GetPage requests, LSN wait included.
	getPageSeconds prometheus.Histogram
	// redoSeconds is the time of each reconstruction the repository asks
	// of WAL redo; redoRecords counts the records replayed.
	redoSeconds prometheus.Histogram
	redoRecords prometheus.Counter
	redoErrors  prometheus.Counter
	// basebackups counts basebackups by outcome.
	basebackups *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		reg: prometheus.NewRegistry(),
		pageRequests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zenith_pageserver_page_requests_total",
			Help: "Page-stream requests answered, by request (getpage, nblocks, exists, dbsize) and result (ok, error).",
		}, []string{"request", "result"}),
		getPageSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "zenith_pageserver_getpage_seconds",
			Help:    "Time to answer a GetPage request, waiting for its LSN included.",
			Buckets: prometheus.ExponentialBuckets(10e-6, 4, 10),
		}),
		redoSeconds: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "zenith_pageserver_redo_seconds",
			Help:    "Time to reconstruct one page or SLRU segment page by WAL redo.",
			Buckets: prometheus.ExponentialBuckets(10e-6, 4, 10),
		}),
		redoRecords: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zenith_pageserver_redo_records_total",
			Help: "WAL records and Go-applied operations replayed by WAL redo.",
		}),
		redoErrors: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "zenith_pageserver_redo_errors_total",
			Help: "Reconstructions that failed.",
		}),
		basebackups: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "zenith_pageserver_basebackups_total",
			Help: "Basebackups sent, by result (ok, error).",
		}, []string{"result"}),
	}
	m.reg.MustRegister(m.pageRequests, m.getPageSeconds, m.redoSeconds, m.redoRecords, m.redoErrors, m.basebackups,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	return m
}

// register adds the per-timeline metrics, read from s at each scrape.
func (m *metrics) register(s *Server) {
	m.reg.MustRegister(&timelineCollector{s: s}, memoryCollector{s: s}, remoteCollector{s.repo.RemoteStats()},
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "zenith_pageserver_walredo_processes",
			Help: "Live WAL redo processes, of all tenants.",
		}, func() float64 { return float64(s.redo.Stats().Processes) }),
		prometheus.NewCounterFunc(prometheus.CounterOpts{
			Name: "zenith_pageserver_walredo_retired_total",
			Help: "WAL redo processes retired after walredo_idle_timeout unused.",
		}, func() float64 { return float64(s.redo.Stats().Retired) }))
}

// timeRedo wraps the repository's Redo to count and time it.
func (m *metrics) timeRedo(r repo.Redo) repo.Redo { return timedRedo{r, m} }

type timedRedo struct {
	r repo.Redo
	m *metrics
}

func (t timedRedo) Apply(ctx context.Context, tenant id.TenantID, k key.Key, base []byte, records []value.Record, lsn pgdata.LSN) ([]byte, error) {
	start := time.Now()
	page, err := t.r.Apply(ctx, tenant, k, base, records, lsn)
	t.m.redoSeconds.Observe(time.Since(start).Seconds())
	t.m.redoRecords.Add(float64(len(records)))
	if err != nil {
		t.m.redoErrors.Inc()
	}
	return page, err
}

// timelineCollector reports every loaded timeline's LSNs, its WAL
// receiver's positions, and its layer files, at scrape time.
type timelineCollector struct{ s *Server }

var (
	timelineLabels     = []string{"tenant_id", "timeline_id"}
	descLastRecordLSN  = prometheus.NewDesc("zenith_pageserver_last_record_lsn", "End of the last WAL record ingested.", timelineLabels, nil)
	descDiskConsistent = prometheus.NewDesc("zenith_pageserver_disk_consistent_lsn", "LSN up to which the timeline is durable in layer files.", timelineLabels, nil)
	descRemoteConsist  = prometheus.NewDesc("zenith_pageserver_remote_consistent_lsn", "LSN up to which the timeline is in remote storage (0: nothing uploaded, or no remote storage).", timelineLabels, nil)
	descGCCutoff       = prometheus.NewDesc("zenith_pageserver_gc_cutoff_lsn", "Lowest LSN the timeline can be read at.", timelineLabels, nil)
	descWALReceived    = prometheus.NewDesc("zenith_pageserver_wal_received_lsn", "End of the WAL received from the timeline's source.", timelineLabels, nil)
	descWALFlushed     = prometheus.NewDesc("zenith_pageserver_wal_flushed_lsn", "End of the received WAL that is fsynced.", timelineLabels, nil)
	descWALConnected   = prometheus.NewDesc("zenith_pageserver_wal_receiver_connected", "1 when the WAL receiver is streaming from its source.", timelineLabels, nil)
	descWALSafekeeper  = prometheus.NewDesc("zenith_pageserver_wal_receiver_safekeeper", "Each safekeeper the timeline's WAL comes from: 1 for the one streamed from, 0 for the others.", append(timelineLabels, "safekeeper"), nil)
	descWALStoreFail   = prometheus.NewDesc("zenith_pageserver_wal_store_failing", "1 while the timeline's WAL store fails to write, fsync or cut (full disk, I/O error): the receiver cut it back to its synced end and retries with backoff.", timelineLabels, nil)
	descWALStoreErrs   = prometheus.NewDesc("zenith_pageserver_wal_store_errors_total", "Failed writes, fsyncs and cuts of the timeline's WAL store.", timelineLabels, nil)
	descFlushStalled   = prometheus.NewDesc("zenith_pageserver_flush_stalled", "1 while a write of the timeline (a step of its layer flush, its WAL store's write or fsync) has been in progress for longer than stall_threshold: a disk that does not answer.", timelineLabels, nil)
	descWALDecodeErrs  = prometheus.NewDesc("zenith_pageserver_wal_decode_errors_total", "Streams from the timeline's source that ended with WAL that does not decode (each followed by a reconnection).", timelineLabels, nil)
	descIngestStopped  = prometheus.NewDesc("zenith_pageserver_ingest_stopped", "1 when the timeline's WAL ingest stopped on a record it could not ingest (its WAL is still received and kept; see the timeline's ingest_stopped in the HTTP API).", timelineLabels, nil)
	descIngestStopLSN  = prometheus.NewDesc("zenith_pageserver_ingest_stopped_lsn", "Where the timeline's WAL ingest stopped (the end of the last record ingested), for a stopped ingest.", timelineLabels, nil)
	descLayerFiles     = prometheus.NewDesc("zenith_pageserver_layer_files", "Layer files of the timeline, by kind.", append(timelineLabels, "kind"), nil)
	descLayerBytes     = prometheus.NewDesc("zenith_pageserver_layer_bytes", "Bytes of the timeline's layer files, by kind.", append(timelineLabels, "kind"), nil)
	descLogicalSize    = prometheus.NewDesc("zenith_pageserver_logical_size_bytes", "Size of the timeline's databases as of its last record (what pg_database_size sums to); -1 if it could not be computed.", timelineLabels, nil)
	descWALStoreBytes  = prometheus.NewDesc("zenith_pageserver_wal_store_bytes", "Bytes of the timeline's raw WAL kept by the page server.", timelineLabels, nil)
)

func (c *timelineCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descLastRecordLSN, descDiskConsistent, descRemoteConsist, descGCCutoff, descWALReceived, descWALFlushed, descWALConnected, descWALSafekeeper, descWALDecodeErrs, descWALStoreFail, descWALStoreErrs, descFlushStalled, descIngestStopped, descIngestStopLSN, descLayerFiles, descLayerBytes, descLogicalSize, descWALStoreBytes} {
		ch <- d
	}
}

func (c *timelineCollector) Collect(ch chan<- prometheus.Metric) {
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	now := time.Now()
	for _, t := range c.s.tenants.list() {
		for _, info := range t.tn.Timelines() {
			tl, err := t.tn.Timeline(info.ID)
			if err != nil {
				continue
			}
			labels := []string{t.id.String(), info.ID.String()}
			stalled := 0.0
			if op, _ := timelineStall(tl, t.walOf(info.ID), now, c.s.tenants.stallThreshold); op != "" {
				stalled = 1
			}
			gauge(descFlushStalled, stalled, labels...)
			gauge(descLastRecordLSN, float64(tl.LastRecordLSN()), labels...)
			gauge(descDiskConsistent, float64(tl.DiskConsistentLSN()), labels...)
			gauge(descRemoteConsist, float64(tl.RemoteConsistentLSN()), labels...)
			gauge(descGCCutoff, float64(tl.GCCutoff()), labels...)
			if stop := tl.IngestStopped(); stop != nil {
				gauge(descIngestStopped, 1, labels...)
				gauge(descIngestStopLSN, float64(stop.LSN), labels...)
			} else {
				gauge(descIngestStopped, 0, labels...)
			}
			if w := t.walOf(info.ID); w != nil {
				st := w.Status()
				gauge(descWALReceived, float64(st.Received), labels...)
				gauge(descWALFlushed, float64(st.Flushed), labels...)
				connected := 0.0
				if st.Connected {
					connected = 1
				}
				gauge(descWALConnected, connected, labels...)
				ch <- prometheus.MustNewConstMetric(descWALDecodeErrs, prometheus.CounterValue, float64(st.DecodeErrors), labels...)
				failing := 0.0
				if st.StoreError != "" {
					failing = 1
				}
				gauge(descWALStoreFail, failing, labels...)
				ch <- prometheus.MustNewConstMetric(descWALStoreErrs, prometheus.CounterValue, float64(st.StoreErrors), labels...)
				for _, sk := range st.Safekeepers {
					current := 0.0
					if sk == st.Safekeeper {
						current = 1
					}
					gauge(descWALSafekeeper, current, append(labels, sk)...)
				}
			}
			sz := t.sizes(context.Background(), tl)
			gauge(descLogicalSize, float64(sz.Logical), labels...)
			gauge(descWALStoreBytes, float64(sz.WAL), labels...)
			files, bytes := layerFiles(filepath.Join(t.dir, "timelines", info.ID.String()))
			for kind, n := range files {
				gauge(descLayerFiles, float64(n), append(labels, kind)...)
				gauge(descLayerBytes, float64(bytes[kind]), append(labels, kind)...)
			}
		}
	}
}

// layerFiles counts the layer files in a timeline's directory and their
// bytes, by kind ("delta", "image"). Only names that parse as layer files
// count: metadata and temporary files do not.
func layerFiles(dir string) (files map[string]int, bytes map[string]int64) {
	files, bytes = map[string]int{"delta": 0, "image": 0}, map[string]int64{"delta": 0, "image": 0}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return files, bytes
	}
	for _, e := range entries {
		d, err := layer.ParseFileName(e.Name())
		if err != nil {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue
		}
		kind := "delta"
		if d.Kind == layer.Image {
			kind = "image"
		}
		files[kind]++
		bytes[kind] += info.Size()
	}
	return files, bytes
}

// remoteCollector reports the traffic with remote storage.
type remoteCollector struct{ st *repo.RemoteStats }

var (
	descRemoteUploads       = prometheus.NewDesc("zenith_pageserver_remote_uploads_total", "Objects uploaded to remote storage (layer files, indexes, tenant files).", nil, nil)
	descRemoteUploadBytes   = prometheus.NewDesc("zenith_pageserver_remote_upload_bytes_total", "Bytes uploaded to remote storage.", nil, nil)
	descRemoteUploadErrors  = prometheus.NewDesc("zenith_pageserver_remote_upload_errors_total", "Uploads of a timeline or tenant that failed (each retried later).", nil, nil)
	descRemoteDownloads     = prometheus.NewDesc("zenith_pageserver_remote_downloads_total", "Objects downloaded from remote storage.", nil, nil)
	descRemoteDownloadBytes = prometheus.NewDesc("zenith_pageserver_remote_download_bytes_total", "Bytes downloaded from remote storage.", nil, nil)
	descLayerFetches        = prometheus.NewDesc("zenith_pageserver_layer_fetches_total", "Layer files downloaded from remote storage at a read (not on the local disk: attached lazily, or evicted).", nil, nil)
	descLayerEvictions      = prometheus.NewDesc("zenith_pageserver_layer_evictions_total", "Layer files evicted from the local disk (layer_disk_budget).", nil, nil)
)

func (c remoteCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descRemoteUploads, descRemoteUploadBytes, descRemoteUploadErrors, descRemoteDownloads, descRemoteDownloadBytes, descLayerFetches, descLayerEvictions} {
		ch <- d
	}
}

func (c remoteCollector) Collect(ch chan<- prometheus.Metric) {
	for _, m := range []struct {
		d *prometheus.Desc
		v int64
	}{
		{descRemoteUploads, c.st.Uploads.Load()}, {descRemoteUploadBytes, c.st.UploadedBytes.Load()},
		{descRemoteUploadErrors, c.st.UploadErrors.Load()}, {descRemoteDownloads, c.st.Downloads.Load()},
		{descRemoteDownloadBytes, c.st.DownloadedBytes.Load()},
		{descLayerFetches, c.st.LayerFetches.Load()}, {descLayerEvictions, c.st.Evictions.Load()},
	} {
		ch <- prometheus.MustNewConstMetric(m.d, prometheus.CounterValue, float64(m.v))
	}
}
