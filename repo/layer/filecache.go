package layer

import (
	"container/list"
	"sync"
	"sync/atomic"
)

// fileCache bounds how many layer files are open at once. Each open File
// holds one file descriptor (its sstable reader's file); a repository has
// as many layer files as its history needs, far more than a process may
// keep open. The cache keeps the open ones in least-recently-used order and,
// before a file is opened past the limit, closes the least recently used
// one that nobody is reading. A File closed this way reopens on its next
// use (its trailer is checked again; its blocks already in the block cache
// are not found again, they age out of it).
//
// A file that is being read (a Collect in progress, an open Iterator) is
// never closed under its reader: its File.mu is read-locked, and the cache
// only closes a file whose lock it can take without waiting. When every
// open file is in use, the next one opens beyond the limit (counted in
// FileStats.OverLimit) rather than wait, because one goroutine may hold
// several files open at once (compaction merges many layers) and waiting
// could deadlock it.
type fileCache struct {
	limit int

	mu sync.Mutex
	// lru holds the open *File values, the most recently used first.
	lru list.List
	// open counts the files open and being opened.
	open int

	opens     atomic.Int64
	evictions atomic.Int64
	overLimit atomic.Int64
}

// FileStats is the state of an Env's open layer files.
type FileStats struct {
	// Open is how many layer files are open now, at most Limit unless
	// more than Limit are being read at the same moment.
	Open  int
	Limit int
	// Opens and Evictions count the files opened, and those closed to
	// make room for another, since the Env was made; OverLimit counts the
	// opens past the limit because every open file was in use.
	Opens     int64
	Evictions int64
	OverLimit int64
}

func newFileCache(limit int) *fileCache {
	return &fileCache{limit: limit}
}

// reserve makes room for one more open file, closing the least recently
// used idle ones while the limit is reached. The caller opens its file
// and then calls add, or release if the open failed.
func (c *fileCache) reserve() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closeIdleLocked(c.limit - 1)
	if c.open >= c.limit {
		c.overLimit.Add(1)
	}
	c.open++
	c.opens.Add(1)
}

// shed closes every open file that nobody is reading and returns how
// many it closed: what an open that failed because the process is out of
// file descriptors (EMFILE, ENFILE) does before it tries again, since the
// limit counts layer files only and sockets, pipes and other files take
// descriptors too.
func (c *fileCache) shed() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeIdleLocked(0)
}

// closeIdleLocked closes the least recently used files that nobody is
// reading until at most keep are open, and returns how many it closed.
func (c *fileCache) closeIdleLocked(keep int) int {
	closed := 0
	for e := c.lru.Back(); e != nil && c.open > keep; {
		prev := e.Prev()
		f := e.Value.(*File)
		if f.mu.TryLock() {
			c.lru.Remove(e)
			f.elem = nil
			c.open--
			c.evictions.Add(1)
			closed++
			// A read-only file: an error closing it loses nothing.
			_ = f.closeReader()
			f.mu.Unlock()
		}
		e = prev
	}
	return closed
}

// release gives back a reservation whose open failed.
func (c *fileCache) release() {
	c.mu.Lock()
	c.open--
	c.mu.Unlock()
}

// add records f, just opened under a reservation, as the most recently
// used; f.mu is locked.
func (c *fileCache) add(f *File) {
	c.mu.Lock()
	f.elem = c.lru.PushFront(f)
	c.mu.Unlock()
}

// touch marks f, open and locked by the caller, as just used.
func (c *fileCache) touch(f *File) {
	c.mu.Lock()
	if f.elem != nil {
		c.lru.MoveToFront(f.elem)
	}
	c.mu.Unlock()
}

// remove forgets f, which its owner is closing; f.mu is locked.
func (c *fileCache) remove(f *File) {
	c.mu.Lock()
	if f.elem != nil {
		c.lru.Remove(f.elem)
		f.elem = nil
		c.open--
	}
	c.mu.Unlock()
}

// closeAll closes every open file that is not in use; it is what Env.Close
// does with files their owners left open.
func (c *fileCache) closeAll() { c.shed() }

func (c *fileCache) stats() FileStats {
	c.mu.Lock()
	open := c.open
	c.mu.Unlock()
	return FileStats{
		Open: open, Limit: c.limit,
		Opens: c.opens.Load(), Evictions: c.evictions.Load(), OverLimit: c.overLimit.Load(),
	}
}
