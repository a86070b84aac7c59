package repo_test

import (
	"bytes"
	"errors"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/tomlconf"
	"github.com/zenithdb/zenith/repo/value"
	"github.com/zenithdb/zenith/repo/vfs"
)

// TestDiskFullStopsIngest fills the disk under a writer: every write of
// the file system fails with ENOSPC. The writer must stop (FinishWrite
// waits) once the in-memory layers reach their limit, instead of growing
// memory or dropping what it could not flush; the repository must say
// that the disk is full; and once space is back, ingest must go on by
// itself and every value read back. Before, the writer logged the failed
// flush and went on ingesting into memory without bound.
func TestDiskFullStopsIngest(t *testing.T) {
	const (
		limit   = 64 << 10
		recSize = 4 << 10
		records = 200
	)
	fs := vfs.NewFaulty(vfs.NewMem())
	cfg := testConfig(fs)
	cfg.InMemoryLayerLimit = limit
	cfg.FlushInterval = 20 * time.Millisecond
	r := mustOpen(t, cfg)
	defer r.Close()
	conf := repo.DefaultTenantConfig()
	conf.CheckpointTimeout = tomlconf.Duration(24 * time.Hour)
	_, tl := newTimeline(t, r, conf)
	var full atomic.Bool
	fs.SetRule(func(op vfs.Op, name string) error {
		if full.Load() && (op == vfs.OpCreate || op == vfs.OpWrite || op == vfs.OpSync) {
			return &vfs.DiskFullError{Path: name, Err: syscall.ENOSPC}
		}
		return nil
	})
	payload := func(i int) []byte { return bytes.Repeat([]byte{byte(i)}, recSize) }
	lsnOf := func(i int) pgdata.LSN { return pgdata.LSN(0x100 + 0x10*i) }
	var written atomic.Int64
	full.Store(true)
	done := make(chan struct{})
	go func() {
		defer close(done)
		for i := range records {
			if err := tl.Put(blk(uint32(i)), lsnOf(i), value.Image(payload(i))); err != nil {
				t.Error(err)
				return
			}
			if err := tl.FinishWrite(lsnOf(i), lsnOf(i)-8); err != nil {
				t.Error(err)
				return
			}
			written.Add(1)
		}
	}()
	// The writer must come to a stop well before the end, with memory at
	// the limit and the disk reported full.
	var stopped int64 = -1
	for deadline := time.Now().Add(time.Minute); time.Now().Before(deadline); {
		n := written.Load()
		time.Sleep(500 * time.Millisecond)
		if n == written.Load() && n > 0 {
			stopped = n
			break
		}
	}
	if stopped < 0 || stopped >= records {
		t.Fatalf("the writer did not stop on a full disk (%d of %d records written)", written.Load(), records)
	}
	st := r.MemoryStats()
	if total := st.OpenLayerBytes + st.FrozenLayerBytes; total > limit+2*recSize {
		t.Errorf("in-memory layers hold %d bytes with the disk full, limit %d", total, limit)
	}
	since, n, ferr := r.DiskState().Full()
	var dfe *vfs.DiskFullError
	if !errors.As(ferr, &dfe) || since.IsZero() || n == 0 {
		t.Errorf("DiskState().Full() = %v, %v, %d errors; want a *DiskFullError", ferr, since, n)
	}
	if got := tl.DiskConsistentLSN(); got >= lsnOf(int(stopped)-1) {
		t.Errorf("disk-consistent LSN %v with nothing written, want below %v", got, lsnOf(int(stopped)-1))
	}
	t.Logf("stopped after %d records: %v", stopped, ferr)

	full.Store(false)
	select {
	case <-done:
	case <-time.After(2 * time.Minute):
		t.Fatalf("ingest did not go on once space was freed (%d of %d records written)", written.Load(), records)
	}
	if err := tl.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	if _, _, ferr := r.DiskState().Full(); ferr != nil {
		t.Errorf("disk still reported full after a flush succeeded: %v", ferr)
	}
	if got, want := tl.DiskConsistentLSN(), lsnOf(records-1); got != want {
		t.Errorf("disk-consistent LSN %v, want %v", got, want)
	}
	for i := range records {
		got, err := tl.Get(t.Context(), blk(uint32(i)), lsnOf(records-1))
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, payload(i)) {
			t.Fatalf("block %d: got %d bytes starting %x, want %d bytes of %x", i, len(got), got[:1], recSize, byte(i))
		}
	}
}
