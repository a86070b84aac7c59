package walredo

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/value"
)

const tenant = "0123456789abcdef0123456789abcdef"

var (
	heapRel   = pgdata.RelFileNode{SpcNode: 1663, DbNode: 16384, RelNode: 16385}
	targetTag = BufferTag{Rel: heapRel, Fork: pgdata.ForkMain, Block: 7}
)

func TestRedoFullPageImage(t *testing.T) {
	m := openTestManager(t, nil)
	ctx := context.Background()
	image := testPage(0x5A)
	other1 := BufferTag{Rel: heapRel, Fork: pgdata.ForkMain, Block: 3}
	other2 := BufferTag{Rel: heapRel, Fork: pgdata.ForkMain, Block: 1 << 22} // far (32 GB in): the scratch file stays sparse
	tests := []struct {
		name string
		tag  BufferTag
		recs []Record
		base []byte
		want func() []byte
	}{
		{"image restored, LSN stamped", targetTag, []Record{{LSN: 0x1000028, WAL: fpiRecord(image, targetTag)}}, nil,
			func() []byte { p := testPage(0x5A); setLSN(p, 0x1000028); return p }},
		{"target among other blocks", targetTag, []Record{{LSN: 0x2000000, WAL: fpiRecord(image, other1, targetTag, other2)}}, testPage(1),
			func() []byte { p := testPage(0x5A); setLSN(p, 0x2000000); return p }},
		{"high block of the vm fork", BufferTag{Rel: heapRel, Fork: pgdata.ForkVM, Block: 4000000},
			[]Record{{LSN: 0x3000000, WAL: fpiRecord(image, BufferTag{Rel: heapRel, Fork: pgdata.ForkVM, Block: 4000000})}}, nil,
			func() []byte { p := testPage(0x5A); setLSN(p, 0x3000000); return p }},
		{"no records returns the base", targetTag, nil, testPage(9), func() []byte { return testPage(9) }},
		{"nothing at all is a zero page", targetTag, nil, nil, func() []byte { return make([]byte, pgdata.BlockSize) }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := m.Redo(ctx, tenant, tt.tag, tt.base, tt.recs)
			if err != nil {
				t.Fatalf("Redo: %v", err)
			}
			if want := tt.want(); !bytes.Equal(got, want) {
				t.Errorf("page differs: LSN %v (want %v), first differing byte %d", pageLSN(got), pageLSN(want), firstDiff(got, want))
			}
		})
	}
}

func setLSN(p []byte, lsn pgdata.LSN) {
	le.PutUint32(p[0:], uint32(lsn>>32))
	le.PutUint32(p[4:], uint32(lsn))
}

func firstDiff(a, b []byte) int {
	for i := range a {
		if i >= len(b) || a[i] != b[i] {
			return i
		}
	}
	return -1
}

// TestRedoHeapVisible replays a heap record through the heap's redo: the
// page is marked all-visible, and the map block the record also names is
// left alone (it is another page).
func TestRedoHeapVisible(t *testing.T) {
	m := openTestManager(t, nil)
	got, err := m.Redo(context.Background(), tenant, targetTag, testPage(8), []Record{{LSN: 0x5000000, WAL: visibleRecord(targetTag)}})
	if err != nil {
		t.Fatal(err)
	}
	// heap_xlog_visible sets PD_ALL_VISIBLE and, without data checksums or
	// wal_log_hints (XLogHintBitIsNeeded), leaves the page LSN alone.
	const pdAllVisible = 0x0004
	want := testPage(8)
	le.PutUint16(want[10:], pdAllVisible) // pd_flags
	if !bytes.Equal(got, want) {
		t.Errorf("page differs at byte %d: pd_flags %#x, LSN %v", firstDiff(got, want), le.Uint16(got[10:]), pageLSN(got))
	}
	// The map page of the same record gets the bit (and the heap page,
	// now another block, is skipped).
	vmTag := BufferTag{Rel: heapRel, Fork: pgdata.ForkVM, Block: 0}
	vm, err := m.Redo(context.Background(), tenant, vmTag, testPage(0), []Record{{LSN: 0x5000000, WAL: visibleRecord(targetTag)}})
	if err != nil {
		t.Fatal(err)
	}
	if bits := pgdata.VMBits(vm, targetTag.Block); bits != pgdata.VMAllVisible || pageLSN(vm) != 0x5000000 {
		t.Errorf("map page: bits of block %d = %d, LSN %v; want all-visible at 0/5000000", targetTag.Block, bits, pageLSN(vm))
	}
}

// TestRedoErrorKeepsProcess: a request PostgreSQL rejects with an ERROR
// fails alone; the same process serves the next one.
func TestRedoErrorKeepsProcess(t *testing.T) {
	m := openTestManager(t, func(c *Config) { c.ProcessesPerTenant = 1 })
	ctx := context.Background()
	elsewhere := BufferTag{Rel: heapRel, Fork: pgdata.ForkMain, Block: 8}
	checkpoint := fpiRecord(testPage(1), targetTag)
	checkpoint[16] = 0x00 // XLOG_CHECKPOINT_SHUTDOWN: not a page change
	tests := []struct {
		name string
		recs []Record
		want string
	}{
		{"record not about the page", []Record{{LSN: 0x1000000, WAL: fpiRecord(testPage(1), elsewhere)}}, "does not reference the target block"},
		{"record that is not a page change", []Record{{LSN: 0x1000000, WAL: checkpoint}}, "does not change relation pages"},
		{"truncated record", []Record{{LSN: 0x1000000, WAL: fpiRecord(testPage(1), targetTag)[:100]}}, "xl_tot_len"},
		{"history without the page's start", []Record{{LSN: 0x1000000, WAL: visibleRecord(targetTag)}}, "needs the earlier contents"},
	}
	var pid int
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := m.Redo(ctx, tenant, targetTag, nil, tt.recs)
			var re *RedoError
			if !errors.As(err, &re) || !strings.Contains(re.Message, tt.want) {
				t.Fatalf("Redo error = %v, want a RedoError about %q", err, tt.want)
			}
			got, err := m.Redo(ctx, tenant, targetTag, nil, []Record{{LSN: 0x1000000, WAL: fpiRecord(testPage(2), targetTag)}})
			if err != nil || got[pgdata.BlockSize-1] != 2 {
				t.Fatalf("next request: err %v", err)
			}
			pids := m.pids(tenant)
			if len(pids) != 1 || (pid != 0 && pids[0] != pid) {
				t.Fatalf("processes %v after an error, want the same one (%d)", pids, pid)
			}
			pid = pids[0]
		})
	}
}

// TestRedoKillDuringRequest kills the redo process while a request is in
// flight: that request fails with ErrProcessDied, the next one succeeds in
// a new process.
func TestRedoKillDuringRequest(t *testing.T) {
	m := openTestManager(t, func(c *Config) { c.ProcessesPerTenant = 1 })
	ctx := context.Background()
	rec := []Record{{LSN: 0x1000000, WAL: fpiRecord(testPage(3), targetTag)}}
	if _, err := m.Redo(ctx, tenant, targetTag, nil, rec); err != nil {
		t.Fatal(err)
	}
	pids := m.pids(tenant)
	if len(pids) != 1 {
		t.Fatalf("pids %v, want one process", pids)
	}
	// Stopped, the process cannot answer: the request is surely in flight
	// when the kill comes.
	if err := syscall.Kill(pids[0], syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	errc := make(chan error, 1)
	go func() {
		_, err := m.Redo(ctx, tenant, targetTag, nil, rec)
		errc <- err
	}()
	waitInflight(t, m, 1)
	if err := syscall.Kill(pids[0], syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	err := <-errc
	if !errors.Is(err, ErrProcessDied) || !strings.Contains(err.Error(), "killed") {
		t.Fatalf("request in flight during the kill: error %v, want ErrProcessDied saying it was killed", err)
	}
	got, err := m.Redo(ctx, tenant, targetTag, nil, rec)
	if err != nil || got[pgdata.BlockSize-1] != 3 {
		t.Fatalf("request after the kill: %v", err)
	}
	if now := m.pids(tenant); len(now) != 1 || now[0] == pids[0] {
		t.Errorf("processes after the kill %v, want one new process (not %d)", now, pids[0])
	}
}

// TestRedoPanic: a record that makes PostgreSQL PANIC ends the process;
// the request fails with ErrProcessDied quoting the PANIC and the next
// request gets a new process.
func TestRedoPanic(t *testing.T) {
	m := openTestManager(t, func(c *Config) { c.ProcessesPerTenant = 1 })
	ctx := context.Background()
	bad := fpiRecord(testPage(1), targetTag)
	bad[pgdata.XLogRecordHeaderSize+1] |= pgdata.BkpBlockWillInit // XLOG_FPI redo does not zero the page: PANIC
	_, err := m.Redo(ctx, tenant, targetTag, nil, []Record{{LSN: 0x1000000, WAL: bad}})
	if !errors.Is(err, ErrProcessDied) || !strings.Contains(err.Error(), "PANIC") {
		t.Fatalf("redo of a record that PANICs: error %v, want ErrProcessDied quoting the PANIC", err)
	}
	got, err := m.Redo(ctx, tenant, targetTag, nil, []Record{{LSN: 0x1000000, WAL: fpiRecord(testPage(5), targetTag)}})
	if err != nil || got[pgdata.BlockSize-1] != 5 {
		t.Fatalf("request after the PANIC: %v", err)
	}
}

// TestRedoCancelSignal: a SIGINT (query cancel) fails one request with an
// error; the process does not fall back to reading SQL.
func TestRedoCancelSignal(t *testing.T) {
	m := openTestManager(t, func(c *Config) { c.ProcessesPerTenant = 1 })
	ctx := context.Background()
	rec := []Record{{LSN: 0x1000000, WAL: fpiRecord(testPage(6), targetTag)}}
	if _, err := m.Redo(ctx, tenant, targetTag, nil, rec); err != nil {
		t.Fatal(err)
	}
	pids := m.pids(tenant)
	if err := syscall.Kill(pids[0], syscall.SIGINT); err != nil {
		t.Fatal(err)
	}
	var re *RedoError
	if _, err := m.Redo(ctx, tenant, targetTag, nil, rec); !errors.As(err, &re) || !strings.Contains(re.Message, "cancel") {
		t.Fatalf("request after SIGINT: error %v, want the cancel as a RedoError", err)
	}
	got, err := m.Redo(ctx, tenant, targetTag, nil, rec)
	if err != nil || got[pgdata.BlockSize-1] != 6 {
		t.Fatalf("request after the cancelled one: %v", err)
	}
	if now := m.pids(tenant); len(now) != 1 || now[0] != pids[0] {
		t.Errorf("processes %v, want the same one (%d)", now, pids[0])
	}
}

// waitInflight waits until tenant's processes have n requests in flight.
func waitInflight(t *testing.T, m *Manager, n int32) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		m.mu.Lock()
		pl := m.pools[tenant]
		m.mu.Unlock()
		var got int32
		pl.mu.Lock()
		for _, p := range pl.procs {
			got += p.inflight.Load()
		}
		pl.mu.Unlock()
		if got >= n {
			return
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatalf("fewer than %d requests in flight after 10s", n)
}

// TestRedoTimeout: a process that does not answer in time is killed and
// the request fails with ErrTimeout; the next request gets a new process.
func TestRedoTimeout(t *testing.T) {
	m := openTestManager(t, func(c *Config) { c.ProcessesPerTenant = 1; c.RequestTimeout = 300 * time.Millisecond })
	ctx := context.Background()
	rec := []Record{{LSN: 0x1000000, WAL: fpiRecord(testPage(4), targetTag)}}
	if _, err := m.Redo(ctx, tenant, targetTag, nil, rec); err != nil {
		t.Fatal(err)
	}
	pids := m.pids(tenant)
	if err := syscall.Kill(pids[0], syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	if _, err := m.Redo(ctx, tenant, targetTag, nil, rec); !errors.Is(err, ErrTimeout) {
		t.Fatalf("request to a stopped process: error %v, want ErrTimeout", err)
	}
	if _, err := m.Redo(ctx, tenant, targetTag, nil, rec); err != nil {
		t.Fatalf("request after the timeout: %v", err)
	}
}

// TestRedoPipelined sends many requests at once from many goroutines to a
// small pool; each gets its own page back.
func TestRedoPipelined(t *testing.T) {
	m := openTestManager(t, func(c *Config) { c.ProcessesPerTenant = 2 })
	ctx := context.Background()
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for g := 0; g < 8; g++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; i < 25; i++ {
				marker := byte(g*25 + i)
				tag := BufferTag{Rel: heapRel, Fork: pgdata.ForkMain, Block: pgdata.BlockNumber(marker)}
				got, err := m.Redo(ctx, tenant, tag, testPage(0), []Record{{LSN: pgdata.LSN(0x1000000 + int(marker)), WAL: fpiRecord(testPage(marker), tag)}})
				if err != nil {
					errs <- err
					return
				}
				if got[pgdata.BlockSize-1] != marker || pageLSN(got) != pgdata.LSN(0x1000000+int(marker)) {
					errs <- errors.New("a reply went to the wrong request")
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := len(m.pids(tenant)); n < 1 || n > 2 {
		t.Errorf("%d processes, want 1 or 2 (ProcessesPerTenant 2)", n)
	}
}

// TestRedoInterleavesOps replays a visibility-map page whose history mixes
// WAL records with bits cleared in Go.
func TestRedoInterleavesOps(t *testing.T) {
	m := openTestManager(t, nil)
	vmTag := BufferTag{Rel: heapRel, Fork: pgdata.ForkVM, Block: 1}
	allSet := testPage(0xFF)
	for i := 24; i < pgdata.BlockSize; i++ {
		allSet[i] = 0xFF
	}
	first := pgdata.VMHeapBlocksPerPage // heap block of the first bits on map page 1
	recs := []Record{
		{LSN: 0x100, Op: value.VMClear{HeapBlocks: []uint32{uint32(first) + 1, 5}, Flags: pgdata.VMAllFrozen}},
		{LSN: 0x200, WAL: fpiRecord(allSet, vmTag)},
		{LSN: 0x300, Op: value.VMClear{HeapBlocks: []uint32{uint32(first) + 2}, Flags: pgdata.VMValidBits}},
		{LSN: 0x400, Op: value.VMTruncate{HeapBlocks: uint32(first) + 8}},
	}
	got, err := m.Redo(context.Background(), tenant, vmTag, testPage(0), recs)
	if err != nil {
		t.Fatal(err)
	}
	if pageLSN(got) != 0x200 {
		t.Errorf("page LSN %v, want 0/200 from the image (Go operations leave it)", pageLSN(got))
	}
	for i, want := range []uint8{3, 3, 0, 3, 3, 3, 3, 3, 0, 0} {
		if bits := pgdata.VMBits(got, pgdata.BlockNumber(first+i)); bits != want {
			t.Errorf("heap block %d: bits %d, want %d", first+i, bits, want)
		}
	}
}

func TestMask(t *testing.T) {
	m := openTestManager(t, nil)
	page := testPage(7)
	setLSN(page, 0xABCDEF)
	got, err := m.Mask(context.Background(), tenant, pgdata.RmgrHeap, 0, page)
	if err != nil {
		t.Fatal(err)
	}
	// heap_mask: pd_lsn and pd_checksum set to MASK_MARKER (0), the hole
	// between pd_lower and pd_upper to MASK_MARKER.
	want := testPage(0)
	if !bytes.Equal(got[:pgdata.BlockSize-1], want[:pgdata.BlockSize-1]) {
		t.Errorf("masked page differs from the expected at byte %d", firstDiff(got, want))
	}
	if _, err := m.Mask(context.Background(), tenant, pgdata.RmgrTransaction, 0, page); err == nil || !strings.Contains(err.Error(), "no mask function") {
		t.Errorf("mask with the Transaction rmgr: %v, want 'no mask function'", err)
	}
}

// TestIdleProcessRetired: with a short IdleTimeout the tenant's process
// is retired once unused (gone from the process table, counted in
// Stats), and the next request starts a new one that redoes correctly.
func TestIdleProcessRetired(t *testing.T) {
	m := openTestManager(t, func(c *Config) { c.IdleTimeout = 300 * time.Millisecond })
	ctx := context.Background()
	image := testPage(0x5A)
	want := testPage(0x5A)
	setLSN(want, 0x1000028)
	redo := func() {
		t.Helper()
		got, err := m.Redo(ctx, tenant, targetTag, nil, []Record{{LSN: 0x1000028, WAL: fpiRecord(image, targetTag)}})
		if err != nil {
			t.Fatalf("Redo: %v", err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("Redo: page differs at byte %d", firstDiff(got, want))
		}
	}
	redo()
	first := m.pids(tenant)
	if len(first) != 1 || m.Stats().Processes != 1 {
		t.Fatalf("after one request: pids %v, Stats %+v; want one process", first, m.Stats())
	}
	deadline := time.Now().Add(30 * time.Second)
	for m.Stats().Retired == 0 || !isGonePID(first[0]) {
		if time.Now().After(deadline) {
			t.Fatalf("process %d not retired 30 s after its last request: Stats %+v", first[0], m.Stats())
		}
		time.Sleep(50 * time.Millisecond)
	}
	if st := m.Stats(); st.Processes != 0 || st.Retired != 1 {
		t.Errorf("after the retirement: Stats %+v, want no process and 1 retired", st)
	}
	redo()
	if again := m.pids(tenant); len(again) != 1 || again[0] == first[0] {
		t.Errorf("after a retirement, the next request ran on pids %v, want a new process (the old one was %d)", again, first[0])
	}
}

// isGonePID says whether no process pid exists any more.
func isGonePID(pid int) bool { return syscall.Kill(pid, 0) == syscall.ESRCH }
