package lazyfs

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// firstNormalObjectID is PostgreSQL's FirstNormalObjectId: relations
// whose file number is below it are the system catalogs of initdb.
const firstNormalObjectID = 16384

// StartSet is where the blocks a start reads are kept (the blocks of
// catalog files PostgreSQL and its first backends read) and how many:
// the next start of the timeline fetches them ahead, in pipelined
// batches, while PostgreSQL starts, instead of one round trip per block
// as its first backend asks. A file of lines "PATH BLOCK", in the order
// first read, written once (atomically) when the recording ends.
type StartSet struct {
	// Path is the file; empty: no start set.
	Path string
	// Blocks bounds the blocks recorded and fetched ahead.
	Blocks int
	// Window is how long after the mount reads are recorded.
	Window time.Duration
	// Workers is how many files are fetched ahead at once.
	Workers int
}

// startKey is one block of one file of the manifest.
type startKey struct {
	path  string
	block uint32
}

// startRecorder records the catalog blocks read in the start window,
// and fetches the previous start's ahead from the first read of a
// catalog block on: that is the first backend's (the postmaster reads
// none), so the fetches do not compete with the postmaster's own start
// for the machine (they did, when they began at the mount, by as much
// as they saved the backend).
type startRecorder struct {
	set StartSet
	fs  *FS

	// files and blocks are the previous start's set.
	files  []string
	blocks map[string][]uint32
	ahead  sync.Once

	mu    sync.Mutex
	done  bool
	seen  map[startKey]bool
	order []startKey
	timer *time.Timer
}

// newStartRecorder starts recording, with the previous start's set
// read (a set that cannot be read is logged and not fetched ahead).
func newStartRecorder(f *FS, set StartSet) *startRecorder {
	r := &startRecorder{set: set, fs: f, seen: map[startKey]bool{}}
	var err error
	if r.files, r.blocks, err = readStartSet(set.Path, set.Blocks); err != nil {
		f.log.Warn().Err(err).Msg("start set ignored")
	}
	r.timer = time.AfterFunc(set.Window, r.finish)
	return r
}

// record notes that blocks [from, to) of lf were read.
func (r *startRecorder) record(lf *lazyFile, from, to uint32) {
	if r == nil || lf.info.Rel.RelNode >= firstNormalObjectID {
		return
	}
	if len(r.files) > 0 {
		r.ahead.Do(func() { go r.fetchAhead() })
	}
	r.mu.Lock()
	if r.done {
		r.mu.Unlock()
		return
	}
	full := false
	for b := from; b < to; b++ {
		k := startKey{lf.info.Path, b}
		if r.seen[k] {
			continue
		}
		r.seen[k] = true
		r.order = append(r.order, k)
		if len(r.order) >= r.set.Blocks {
			full = true
			break
		}
	}
	r.mu.Unlock()
	if full {
		r.timer.Stop()
		go r.finish()
	}
}

// finish ends the recording and writes the start set, if anything was
// read.
func (r *startRecorder) finish() {
	if r == nil {
		return
	}
	r.mu.Lock()
	if r.done {
		r.mu.Unlock()
		return
	}
	r.done = true
	order := r.order
	r.mu.Unlock()
	if len(order) == 0 {
		return
	}
	if err := writeStartSet(r.set.Path, order); err != nil {
		r.fs.log.Warn().Err(err).Msg("cannot write the start set")
		return
	}
	r.fs.log.Info().Str("start_set", r.set.Path).Int("blocks", len(order)).Msg("start set recorded")
}

// fetchAhead fetches the previous start's set.
func (r *startRecorder) fetchAhead() {
	began := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), r.fs.client.timeout)
	defer cancel()
	n, err := r.fs.prefetchStart(ctx, r.files, r.blocks, r.set.Workers)
	if err != nil {
		// The blocks not fetched are fetched when read, as any.
		r.fs.log.Warn().Err(err).Msg("start set: fetching ahead failed")
	}
	r.fs.log.Info().Int("blocks", n).Int("files", len(r.files)).Dur("took", time.Since(began)).Msg("start set fetched ahead")
}

// writeStartSet writes keys to path, atomically (a start reading it
// sees the old set or the new one).
func writeStartSet(path string, keys []startKey) error {
	var b bytes.Buffer
	for _, k := range keys {
		fmt.Fprintf(&b, "%s %d\n", k.path, k.block)
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := fmt.Sprintf("%s.%d.tmp", path, os.Getpid())
	if err := os.WriteFile(tmp, b.Bytes(), 0o600); err != nil {
		return err
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return err
	}
	return nil
}

// readStartSet reads the start set at path: the blocks of each file,
// files in the order first read, at most limit blocks. A missing file is
// an empty set; a malformed line is an error (the set is a hint: the
// caller logs it and starts without).
func readStartSet(path string, limit int) (files []string, blocks map[string][]uint32, err error) {
	f, err := os.Open(path)
	if os.IsNotExist(err) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, err
	}
	defer f.Close()
	blocks = map[string][]uint32{}
	sc := bufio.NewScanner(f)
	for n, line := 0, 1; sc.Scan() && n < limit; line++ {
		p, num, ok := strings.Cut(sc.Text(), " ")
		b, perr := strconv.ParseUint(num, 10, 32)
		if !ok || perr != nil || p == "" {
			return nil, nil, fmt.Errorf("start set %s, line %d: want \"PATH BLOCK\", got %q", path, line, sc.Text())
		}
		if blocks[p] == nil {
			files = append(files, p)
		}
		blocks[p] = append(blocks[p], uint32(b))
		n++
	}
	if err := sc.Err(); err != nil {
		return nil, nil, err
	}
	return files, blocks, nil
}

// prefetchStart fetches the blocks of the start set that are files of
// the manifest, still remote, in one pipelined batch per file, Workers
// files at a time. A backend reading one of them meanwhile waits for it
// as for any fetch in flight; one reading any other block is not held
// up. It returns the number of blocks fetched.
func (f *FS) prefetchStart(ctx context.Context, files []string, blocks map[string][]uint32, workers int) (int, error) {
	work := make(chan string)
	var (
		mu       sync.Mutex
		fetched  int
		firstErr error
		wg       sync.WaitGroup
	)
	for range max(workers, 1) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for p := range work {
				n, err := f.prefetchFile(ctx, p, blocks[p])
				mu.Lock()
				fetched += n
				if err != nil && firstErr == nil {
					firstErr = err
				}
				mu.Unlock()
			}
		}()
	}
	for _, p := range files {
		work <- p
	}
	close(work)
	wg.Wait()
	return fetched, firstErr
}

// prefetchFile fetches blocks of the manifest's file p that are still
// remote; a file not in the manifest (or no longer lazy) is skipped.
func (f *FS) prefetchFile(ctx context.Context, p string, blocks []uint32) (int, error) {
	if err := f.materialize(p); err != nil {
		return 0, err
	}
	f.mu.Lock()
	lf := f.byPath[p]
	f.mu.Unlock()
	if lf == nil || lf.info.Rel.RelNode >= firstNormalObjectID {
		return 0, nil
	}
	lf.mu.Lock()
	if err := lf.open(); err != nil {
		lf.mu.Unlock()
		return 0, err
	}
	var fetch []uint32
	for _, b := range blocks {
		if b < lf.remote && lf.state[b] == blkRemote {
			lf.state[b] = blkFetching
			fetch = append(fetch, b)
		}
	}
	lf.mu.Unlock()
	if len(fetch) == 0 {
		return 0, nil
	}
	return len(fetch), lf.fetch(ctx, fetch)
}
