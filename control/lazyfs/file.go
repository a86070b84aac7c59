package lazyfs

import (
	"context"
	"fmt"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/zenithdb/zenith/pageserver/api"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// The states of a block of a lazy file below its remote limit.
const (
	// blkRemote: only the page server has it; the backing file has a hole.
	blkRemote byte = iota
	// blkFetching: a fetch of it is in flight; wait for it.
	blkFetching
	// blkCached: fetched, unchanged since; the cache may drop it again.
	blkCached
	// blkWritten: the compute wrote it; the backing file is its only copy.
	blkWritten
)

const blockSize = pgdata.BlockSize

// lazyFile is one relation file segment of the manifest. Its backing
// file has the segment's size from the start, with holes where blocks
// are still remote; state says which. Blocks at or after remote (the
// segment's size at the basebackup, lowered by truncation) are local
// whatever they hold: the compute extended the file there.
type lazyFile struct {
	fs    *FS
	path  string // of the backing file
	info  api.LazyFile
	first pgdata.BlockNumber // the fork's number of the file's block 0

	mu     sync.Mutex
	cond   sync.Cond
	fd     int // the backing file, read-write, open for the FS's life
	remote uint32
	state  []byte
	// next is the block after the furthest one a sequential run of
	// reads has read: a read starting near it (seqWindow) continues the
	// run and fetches ahead.
	next uint32
	// aheadBusy: a background read-ahead of this file is in flight.
	aheadBusy bool
	// touched says, per block below remote, whether the compute has read
	// it through this file system (or written it): what denseBehind
	// measures.
	touched []bool
}

// seqWindow is how far before or after the end of the last sequential
// read a read may start and still count as the next one. Reads of one
// scan do not arrive in order: the kernel sends its read-ahead as
// concurrent requests, and a parallel sequential scan's workers read
// neighbouring blocks through their own file descriptors.
const seqWindow = 32

// sequential reports whether a read of [from, to) continues the run of
// reads before it, and records it; lf.mu must be held.
func (lf *lazyFile) sequential(from, to uint32) bool {
	near := from != 0 && from+seqWindow >= lf.next && from <= lf.next+seqWindow
	if near {
		lf.next = max(lf.next, to)
	} else {
		lf.next = to
	}
	return near
}

// densitySpan is how many blocks behind a sequential run denseBehind
// looks at: a read-ahead window.
const densitySpan = 128

// touch records that the compute read or wrote blocks [from, to); lf.mu
// must be held.
func (lf *lazyFile) touch(from, to uint32) {
	for b := from; b < min(to, lf.remote); b++ {
		lf.touched[b] = true
	}
}

// denseBehind reports whether the run of reads ending at lf.next read
// at least a quarter of the blocks it went past, so that reading ahead
// of it fetches blocks that will be read; lf.mu must be held. A run that skips most
// blocks (an index scan's heap fetches in heap order, or an index-only
// scan's for the pages the visibility map does not cover: one block in
// six after a TPC-B run) still looks sequential to sequential(), and
// read-ahead would fetch every block it skips. It looks at the
// densitySpan blocks before the last seqWindow ones (those may still be
// on their way: concurrent requests, parallel workers), and says dense
// while the run is too short to tell. Stateless: the first dense stretch
// of reads after a sparse one brings read-ahead back, a kernel read of
// 128 blocks at once.
func (lf *lazyFile) denseBehind() bool {
	hi := min(lf.next, lf.remote)
	if hi < seqWindow+densitySpan {
		return true
	}
	hi -= seqWindow
	n := 0
	for _, t := range lf.touched[hi-densitySpan : hi] {
		if t {
			n++
		}
	}
	return 4*n >= densitySpan
}

// readsAhead records a read of [from, to) and reports whether it reads
// ahead: it continues a sequential run, and a dense one (a sparse run
// fetches what is read, nothing more); lf.mu must be held.
func (lf *lazyFile) readsAhead(from, to uint32) bool {
	sequential := lf.sequential(from, to)
	// First: a read of many blocks (the kernel's read-ahead) is dense
	// by itself.
	lf.touch(from, to)
	return sequential && lf.denseBehind()
}

func newLazyFile(fs *FS, path string, info api.LazyFile) *lazyFile {
	n := uint32(info.Size / blockSize)
	lf := &lazyFile{fs: fs, path: path, info: info, first: info.FirstBlock(fs.manifest.RelSegSize),
		fd: -1, remote: n, state: make([]byte, n), touched: make([]bool, n)}
	lf.cond.L = &lf.mu
	return lf
}

// open opens the backing file on first use (a database has thousands
// of relation files, most never read); lf.mu must be held.
func (lf *lazyFile) open() error {
	if lf.fd >= 0 {
		return nil
	}
	fd, err := unix.Open(lf.path, unix.O_RDWR|unix.O_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("open backing file: %w", err)
	}
	lf.fd = fd
	return nil
}

// ensure makes blocks [from, to) local, fetching those that are remote
// in one pipelined batch; with ahead > 0 the batch also takes up to
// ahead remote blocks after to (read-ahead).
func (lf *lazyFile) ensure(ctx context.Context, from, to, ahead uint32) error {
	lf.mu.Lock()
	if err := lf.open(); err != nil {
		lf.mu.Unlock()
		return err
	}
	var fetch []uint32
	for {
		to = min(to, lf.remote)
		busy := false
		for b := from; b < to; b++ {
			if lf.state[b] == blkFetching {
				busy = true
				break
			}
		}
		if !busy {
			break
		}
		lf.cond.Wait()
	}
	for b := from; b < to; b++ {
		if lf.state[b] == blkRemote {
			fetch = append(fetch, b)
		}
	}
	if len(fetch) > 0 || from >= to {
		for b := to; b < min(lf.remote, to+ahead); b++ {
			if lf.state[b] == blkRemote {
				fetch = append(fetch, b)
			}
		}
	}
	if len(fetch) == 0 {
		lf.mu.Unlock()
		return nil
	}
	for _, b := range fetch {
		lf.state[b] = blkFetching
	}
	lf.mu.Unlock()
	return lf.fetch(ctx, fetch)
}

// writeRun is the most fetched pages written with one pwrite.
const writeRun = 16

// runBuffers are fetches' write buffers, of writeRun pages.
var runBuffers = sync.Pool{New: func() any {
	b := make([]byte, 0, writeRun*blockSize)
	return &b
}}

// fetch fetches blocks fetch, which the caller marked blkFetching, in
// one pipelined batch, and makes each local as it arrives.
func (lf *lazyFile) fetch(ctx context.Context, fetch []uint32) error {
	began := time.Now()
	blocks := make([]pgdata.BlockNumber, len(fetch))
	for i, b := range fetch {
		blocks[i] = lf.first + pgdata.BlockNumber(b)
	}
	// Pages are written as they arrive, a run of consecutive ones with
	// one pwrite (up to writeRun pages; the first page of the fetch on
	// its own), and made readable once written: a read waiting for the
	// first blocks of a read-ahead goes on while the rest are on their
	// way.
	var cached []uint32
	var werr error
	// Pages of blocks [runFirst, runFirst+runLen), not written yet, in
	// a buffer from runBuffers: allocated for each fetch, even at the
	// size of one page, the allocation, its clearing and the page faults
	// of fresh memory were 5% of the FUSE server's CPU in one-block
	// fetches.
	runBuf := runBuffers.Get().(*[]byte)
	defer runBuffers.Put(runBuf)
	run := (*runBuf)[:0]
	var runFirst, runLen uint32
	flush := func() error {
		if runLen == 0 {
			return nil
		}
		lf.mu.Lock()
		defer lf.mu.Unlock()
		defer lf.cond.Broadcast()
		// Truncation and writes wait for fetching blocks: this is
		// defensive.
		n := uint32(0)
		for n < runLen && runFirst+n < lf.remote && lf.state[runFirst+n] == blkFetching {
			n++
		}
		runLen = 0
		if n == 0 {
			return nil // truncated away meanwhile
		}
		if _, err := unix.Pwrite(lf.fd, run[:n*blockSize], int64(runFirst)*blockSize); err != nil {
			for b := runFirst; b < runFirst+n; b++ {
				lf.state[b] = blkRemote
			}
			werr = fmt.Errorf("write blocks %d-%d to the local cache: %w", runFirst, runFirst+n-1, err)
			return werr
		}
		for b := runFirst; b < runFirst+n; b++ {
			lf.state[b] = blkCached
			cached = append(cached, b)
		}
		return nil
	}
	err := lf.fs.client.EachPage(ctx, lf.fs.manifest.LSN, lf.info.Rel, lf.info.Fork, blocks, func(i int, page []byte) error {
		b := fetch[i]
		if runLen > 0 && (b != runFirst+runLen || runLen == writeRun) {
			if err := flush(); err != nil {
				return err
			}
		}
		if runLen == 0 {
			runFirst, run = b, run[:0]
		}
		run = append(run, page...)
		runLen++
		if i == 0 {
			return flush()
		}
		return nil
	})
	if ferr := flush(); err == nil {
		err = ferr
	}

	lf.mu.Lock()
	// What did not arrive is remote again.
	for _, b := range fetch {
		if b < lf.remote && lf.state[b] == blkFetching {
			lf.state[b] = blkRemote
		}
	}
	lf.cond.Broadcast()
	lf.mu.Unlock()
	lf.fs.fetched.Add(int64(len(cached)))
	lf.fs.fetches.Add(1)
	lf.fs.log.Debug().Str("file", lf.info.Path).Uint32("block", fetch[0]).Int("blocks", len(fetch)).
		Dur("took", time.Since(began)).Msg("fetched")
	// After the unlock: making room may evict this file's blocks.
	lf.fs.cache.added(lf, cached)
	if werr != nil {
		err = werr
	}
	if err != nil {
		return fmt.Errorf("fetch %d blocks of %s (rel %v fork %v from block %d) at %v: %w",
			len(fetch), lf.info.Path, lf.info.Rel, lf.info.Fork, blocks[0], lf.fs.manifest.LSN, err)
	}
	return nil
}

// evict drops block b from the cache if it is still a clean fetched
// copy: a hole is punched in the backing file and the next read fetches
// it again. It reports whether it did.
func (lf *lazyFile) evict(b uint32) bool {
	lf.mu.Lock()
	defer lf.mu.Unlock()
	if lf.fd < 0 || b >= lf.remote || lf.state[b] != blkCached {
		return false
	}
	if err := unix.Fallocate(lf.fd, unix.FALLOC_FL_PUNCH_HOLE|unix.FALLOC_FL_KEEP_SIZE, int64(b)*blockSize, blockSize); err != nil {
		return false
	}
	lf.state[b] = blkRemote
	return true
}

// readAheadAsync keeps a sequential scan ahead of its reads: once it
// reads within half a read-ahead of the first block not yet local after
// to, the next readAhead blocks from there are fetched in the
// background, so the scan does not stop at the end of every batch. One
// background fetch per file at a time; an error is left for the read
// that needs the block to meet again.
func (lf *lazyFile) readAheadAsync(to uint32) {
	ahead := lf.fs.readAhead
	lf.mu.Lock()
	if lf.aheadBusy || ahead == 0 {
		lf.mu.Unlock()
		return
	}
	first, end := to, min(lf.remote, to+ahead/2)
	for first < end && lf.state[first] != blkRemote {
		first++
	}
	if first == end {
		lf.mu.Unlock()
		return
	}
	lf.aheadBusy = true
	lf.mu.Unlock()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), lf.fs.client.timeout)
		err := lf.ensure(ctx, first, min(lf.remoteBlocks(), first+ahead), 0)
		cancel()
		if err != nil {
			lf.fs.log.Debug().Err(err).Str("file", lf.info.Path).Msg("read-ahead failed")
		}
		lf.mu.Lock()
		lf.aheadBusy = false
		lf.mu.Unlock()
	}()
}

// remoteBlocks is lf.remote, read under lf.mu.
func (lf *lazyFile) remoteBlocks() uint32 {
	lf.mu.Lock()
	defer lf.mu.Unlock()
	return lf.remote
}

// blockRange is the blocks that bytes [off, off+n) touch.
func blockRange(off int64, n int) (uint32, uint32) {
	return uint32(off / blockSize), uint32((off + int64(n) + blockSize - 1) / blockSize)
}

// read reads through the backing file once the blocks are local.
func (lf *lazyFile) read(ctx context.Context, buf []byte, off int64) (int, error) {
	from, to := blockRange(off, len(buf))
	lf.mu.Lock()
	sequential := lf.readsAhead(from, to)
	lf.mu.Unlock()
	ahead := uint32(0)
	if sequential {
		ahead = lf.fs.readAhead
	}
	if err := lf.ensure(ctx, from, to, ahead); err != nil {
		return 0, err
	}
	if sequential {
		lf.readAheadAsync(to)
	}
	n, err := unix.Pread(lf.fd, buf, off)
	if err != nil {
		return 0, err
	}
	return n, nil
}

// write writes data at off. A block it covers only in part is fetched
// first; every block it touches is written, for the node's life.
func (lf *lazyFile) write(ctx context.Context, data []byte, off int64) (int, error) {
	from, to := blockRange(off, len(data))
	if off%blockSize != 0 {
		if err := lf.ensure(ctx, from, from+1, 0); err != nil {
			return 0, err
		}
	}
	if (off+int64(len(data)))%blockSize != 0 {
		if err := lf.ensure(ctx, to-1, to, 0); err != nil {
			return 0, err
		}
	}
	lf.mu.Lock()
	defer lf.mu.Unlock()
	if err := lf.open(); err != nil {
		return 0, err
	}
	for {
		busy := false
		for b := from; b < min(to, lf.remote); b++ {
			if lf.state[b] == blkFetching {
				busy = true
				break
			}
		}
		if !busy {
			break
		}
		lf.cond.Wait()
	}
	n, err := unix.Pwrite(lf.fd, data, off)
	if err != nil {
		return n, err
	}
	for b := from; b < min(to, lf.remote); b++ {
		lf.state[b] = blkWritten
	}
	// The kernel keeps what the compute wrote: its reads of these
	// blocks will not come here, and a scan of them is no sparser.
	lf.touch(from, to)
	return n, nil
}

// truncate sets the file's size. Blocks cut off are no longer remote:
// if the file grows again they are the compute's own.
func (lf *lazyFile) truncate(ctx context.Context, size int64) error {
	if size%blockSize != 0 {
		b := uint32(size / blockSize)
		if err := lf.ensure(ctx, b, b+1, 0); err != nil {
			return err
		}
	}
	lf.mu.Lock()
	defer lf.mu.Unlock()
	if err := lf.open(); err != nil {
		return err
	}
	for {
		busy := false
		for _, s := range lf.state[:lf.remote] {
			if s == blkFetching {
				busy = true
				break
			}
		}
		if !busy {
			break
		}
		lf.cond.Wait()
	}
	if err := unix.Ftruncate(lf.fd, size); err != nil {
		return err
	}
	lf.remote = min(lf.remote, uint32((size+blockSize-1)/blockSize))
	return nil
}

// stat fills st from the backing file.
func (lf *lazyFile) stat(st *syscall.Stat_t) error {
	lf.mu.Lock()
	defer lf.mu.Unlock()
	if err := lf.open(); err != nil {
		return err
	}
	return syscall.Fstat(lf.fd, st)
}
