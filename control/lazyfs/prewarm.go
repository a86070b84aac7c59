package lazyfs

import (
	"context"
	"errors"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/zenithdb/zenith/pageserver/api"
)

// Prewarming: a second after PostgreSQL accepts connections, the FS
// reads the manifest's files through its own mount, smallest first,
// until it has read PrewarmBytes. The reads are the kernel's and this process's
// ordinary sequential reads: the blocks come in batches of the
// read-ahead (about 25 µs of this process's CPU a page, against about
// 200 for a one-block fetch), land in the kernel's page cache, where the
// compute's backends find them without a round trip, and in the backing
// files (the node's bounded cache). Going through the mount, not around
// it, is what keeps it correct: the kernel sends a READ only for a page
// it does not hold, so a page the compute has written (dirty in the
// writeback cache, not yet here) is never overwritten by an older one,
// as a page pushed into the cache (FUSE_NOTIFY_STORE) could be.
//
// Smallest first: the catalogs, then the small tables and indexes, which
// most queries touch; the largest heaps come last, if the budget
// reaches them. A node that reads only part of a big database still
// fetches the rest on first touch, as without prewarming.

// prewarmChunk is the size of each read: the kernel's read-ahead window,
// so that each reaches this process as one batch (with the read-ahead
// of the next behind it).
const prewarmChunk = kernelReadAhead

// prewarmPoll is how often the prewarm looks for PostgreSQL's readiness.
const prewarmPoll = 50 * time.Millisecond

// prewarmDelay is how long the prewarm waits once PostgreSQL is ready:
// the start's own work and the first queries (the catalogs a backend
// reads, a few hundred blocks in tens of milliseconds) come first and do
// not share the two servers' CPU with it. Begun at once, it took a lazy
// start to its first answer from 2.1-2.7 s to 3.2-3.8 s on a loaded
// machine.
const prewarmDelay = time.Second

// pmStatusLine is the line of postmaster.pid (0-based) where PostgreSQL
// writes the postmaster's status, "ready" once it accepts connections.
const pmStatusLine = 7

// PrewarmStats says what a prewarm did.
type PrewarmStats struct {
	Files int
	Bytes int64
	// Took is the time from its first read to its end.
	Took time.Duration
	// Err is why it stopped before its budget or the files ran out (a
	// read failed), nil otherwise.
	Err error
	// Done is false if the prewarm never began or was stopped.
	Done bool
}

// startPrewarm starts reading up to budget bytes once PostgreSQL is
// ready; stopPrewarm ends it.
func (f *FS) startPrewarm(budget int64) {
	ctx, cancel := context.WithCancel(context.Background())
	f.prewarmStop = cancel
	f.prewarmDone = make(chan struct{})
	go func() {
		defer close(f.prewarmDone)
		st := f.prewarm(ctx, budget)
		f.prewarmStats.Store(&st)
		ev := f.log.Info()
		if st.Err != nil {
			ev = f.log.Warn().Err(st.Err)
		}
		if st.Files > 0 || st.Err != nil {
			ev.Int("files", st.Files).Int64("bytes", st.Bytes).Dur("took", st.Took).Bool("done", st.Done).Msg("prewarmed")
		}
	}()
}

// stopPrewarm stops the prewarm, if one runs, and waits for it: a file
// it holds open would keep the mount busy.
func (f *FS) stopPrewarm() {
	if f.prewarmStop == nil {
		return
	}
	f.prewarmStop()
	<-f.prewarmDone
}

// Prewarmed returns what the prewarm did, nil while it runs or if there
// is none.
func (f *FS) Prewarmed() *PrewarmStats { return f.prewarmStats.Load() }

func (f *FS) prewarm(ctx context.Context, budget int64) PrewarmStats {
	var st PrewarmStats
	pid := filepath.Join(f.backing, "postmaster.pid")
	for !postmasterReady(pid) {
		select {
		case <-ctx.Done():
			return st
		case <-time.After(prewarmPoll):
		}
	}
	select {
	case <-ctx.Done():
		return st
	case <-time.After(prewarmDelay):
	}
	began := time.Now()
	files := append([]api.LazyFile(nil), f.manifest.Files...)
	sort.SliceStable(files, func(i, j int) bool { return files[i].Size < files[j].Size })
	buf := make([]byte, prewarmChunk)
	for _, lf := range files {
		if st.Bytes >= budget || ctx.Err() != nil {
			break
		}
		n, err := readFile(ctx, filepath.Join(f.mountpoint, filepath.FromSlash(lf.Path)), buf, budget-st.Bytes)
		st.Bytes += n
		if n > 0 {
			st.Files++
		}
		if err != nil {
			st.Err = err
			break
		}
	}
	st.Took = time.Since(began)
	st.Done = st.Err == nil && ctx.Err() == nil
	return st
}

// readFile reads up to limit bytes of the file at path, from its start,
// into buf, chunk by chunk; a file that is gone (the compute dropped the
// relation) is no error.
func readFile(ctx context.Context, path string, buf []byte, limit int64) (int64, error) {
	file, err := os.Open(path)
	if errors.Is(err, os.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	defer file.Close()
	var total int64
	for total < limit && ctx.Err() == nil {
		n, err := file.Read(buf[:min(int64(len(buf)), limit-total)])
		total += int64(n)
		if err == io.EOF {
			return total, nil
		}
		if err != nil {
			return total, err
		}
	}
	return total, nil
}

// postmasterReady reports whether the postmaster.pid at path says the
// server accepts connections.
func postmasterReady(path string) bool {
	b, err := os.ReadFile(path)
	if err != nil {
		return false
	}
	lines := strings.Split(string(b), "\n")
	if len(lines) <= pmStatusLine {
		return false
	}
	// "standby": a hot standby that accepts read-only connections.
	status := strings.TrimSpace(lines[pmStatusLine])
	return status == "ready" || status == "standby"
}
