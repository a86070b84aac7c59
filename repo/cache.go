package repo

import (
	"container/list"
	"sync"

	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// pageCache keeps the latest reconstructed version of recently read keys,
// least recently used first out. A cached page at LSN c is a valid base for
// a read at any LSN at or above c: the read then only collects the records
// after c (garbage collection never removes those without leaving a newer
// image, which the read finds first).
type pageCache struct {
	mu      sync.Mutex
	max     int64
	size    int64
	lru     *list.List // of *cachedPage, most recent at the front
	entries map[cacheKey]*list.Element
}

type cacheKey struct {
	tenant   id.TenantID
	timeline id.TimelineID
	key      key.Key
}

type cachedPage struct {
	k    cacheKey
	lsn  pgdata.LSN
	page []byte
}

// cacheEntryOverhead approximates the bookkeeping memory of an entry.
const cacheEntryOverhead = 128

func newPageCache(maxBytes int64) *pageCache {
	return &pageCache{max: maxBytes, lru: list.New(), entries: make(map[cacheKey]*list.Element)}
}

// get returns the cached version of k at or below lsn, if any. The page
// must not be modified.
func (c *pageCache) get(k cacheKey, lsn pgdata.LSN) (pgdata.LSN, []byte, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.entries[k]
	if !ok {
		return 0, nil, false
	}
	p := e.Value.(*cachedPage)
	if p.lsn > lsn {
		return 0, nil, false
	}
	c.lru.MoveToFront(e)
	return p.lsn, p.page, true
}

// bytes is the memory the cached pages take, bookkeeping included.
func (c *pageCache) bytes() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.size
}

// put remembers page as k's version at lsn, unless a newer one is cached.
// The cache keeps page; the caller must not modify it afterwards.
func (c *pageCache) put(k cacheKey, lsn pgdata.LSN, page []byte) {
	cost := int64(len(page)) + cacheEntryOverhead
	if cost > c.max {
		return
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.entries[k]; ok {
		p := e.Value.(*cachedPage)
		if p.lsn >= lsn {
			return
		}
		c.size += int64(len(page) - len(p.page))
		p.lsn, p.page = lsn, page
		c.lru.MoveToFront(e)
	} else {
		c.entries[k] = c.lru.PushFront(&cachedPage{k: k, lsn: lsn, page: page})
		c.size += cost
	}
	for c.size > c.max {
		e := c.lru.Back()
		p := e.Value.(*cachedPage)
		c.lru.Remove(e)
		delete(c.entries, p.k)
		c.size -= int64(len(p.page)) + cacheEntryOverhead
	}
}
