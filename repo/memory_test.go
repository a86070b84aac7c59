package repo_test

import (
	"bytes"
	"testing"
	"time"

	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/tomlconf"
	"github.com/zenithdb/zenith/repo/value"
	"github.com/zenithdb/zenith/repo/vfs"
)

// TestInMemoryLayersStayWithinLimit ingests far more than the
// repository's InMemoryLayerLimit into two timelines (of two tenants)
// whose checkpoint distance and timeout would never freeze anything: the
// in-memory layers of both together must stay within the limit after every
// record, what left memory must be on disk (the disk-consistent LSN
// follows), and every value must still read back. Before the limit
// existed, a page server under pgbench held each timeline's WAL in memory
// up to the 256 MiB checkpoint distance or for 10 minutes, whichever came
// first, and its memory grew by about 100 MiB a minute meanwhile.
func TestInMemoryLayersStayWithinLimit(t *testing.T) {
	const (
		limit   = 64 << 10
		recSize = 1 << 10
		records = 1000 // per timeline: 1 MiB each, 16 times the limit
	)
	cfg := testConfig(vfs.NewMem())
	cfg.InMemoryLayerLimit = limit
	// Background flushing on, but only when asked: what keeps memory
	// bounded must be the writer's own freezing and throttling.
	cfg.FlushInterval = time.Hour
	r := mustOpen(t, cfg)
	defer r.Close()
	conf := repo.DefaultTenantConfig()
	conf.CheckpointDistance = 1 << 30
	conf.CheckpointTimeout = tomlconf.Duration(24 * time.Hour)
	var tls []*repo.Timeline
	for range 2 {
		_, tl := newTimeline(t, r, conf)
		tls = append(tls, tl)
	}
	payload := func(i int) []byte { return bytes.Repeat([]byte{byte(i)}, recSize) }
	lsnOf := func(i int) pgdata.LSN { return pgdata.LSN(0x100 + 0x10*i) }
	// One record per writer may be in an open layer above the limit when
	// the check runs.
	slack := int64(len(tls)) * 2 * recSize
	var peak int64
	for i := range records {
		for _, tl := range tls {
			put(t, tl, lsnOf(i), map[key.Key]value.Value{blk(uint32(i % 50)): value.Image(payload(i))})
			st := r.MemoryStats()
			total := st.OpenLayerBytes + st.FrozenLayerBytes
			peak = max(peak, total)
			if total > limit+slack {
				t.Fatalf("record %d: in-memory layers hold %d bytes (open %d, frozen %d), limit %d",
					i, total, st.OpenLayerBytes, st.FrozenLayerBytes, limit)
			}
		}
	}
	if peak < limit/4 {
		t.Errorf("in-memory layers peaked at %d bytes: the limit of %d was never approached, the test shows nothing", peak, limit)
	}
	last := lsnOf(records - 1)
	for _, tl := range tls {
		// Everything but what the limit lets stay in memory is on disk.
		if got, min := tl.DiskConsistentLSN(), last-pgdata.LSN(0x10*limit/recSize); got < min {
			t.Errorf("timeline %s: disk-consistent LSN %v, want at least %v", tl.ID(), got, min)
		}
		for i := records - 50; i < records; i++ {
			got, err := tl.Get(t.Context(), blk(uint32(i%50)), last)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, payload(i)) {
				t.Fatalf("block %d at %v: got %d bytes starting %x, want %d bytes of %x", i%50, last, len(got), got[:1], recSize, byte(i))
			}
		}
	}
}
