package layer

import (
	"fmt"
	"sort"
	"sync"
	"time"

	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/value"
)

// entryOverhead approximates the memory an entry costs besides its value,
// so that the freeze threshold tracks memory rather than payload alone.
const entryOverhead = 32

// version is one value of one key.
type version struct {
	lsn pgdata.LSN
	val value.Value
}

// MemLayer is an in-memory layer. While open it takes values (Put) at LSNs
// from its start on; Freeze fixes its end, after which it never changes
// and can be written out as a delta layer file (WriteDelta).
type MemLayer struct {
	start   pgdata.LSN
	created time.Time

	mu     sync.RWMutex
	end    pgdata.LSN // MaxLSN while open
	index  map[key.Key][]version
	size   int64
	maxLSN pgdata.LSN
}

// NewMemLayer returns an open in-memory layer for values at start or later.
func NewMemLayer(start pgdata.LSN, now time.Time) *MemLayer {
	return &MemLayer{start: start, created: now, end: pgdata.MaxLSN, index: make(map[key.Key][]version)}
}

// Desc implements Layer.
func (m *MemLayer) Desc() Desc {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return Desc{Kind: InMemory, Keys: key.All, LSNs: LSNRange{m.start, m.end}}
}

// Created is when the layer was opened, for freezing by age.
func (m *MemLayer) Created() time.Time { return m.created }

// Size is the approximate memory the layer's values take, in bytes.
func (m *MemLayer) Size() int64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.size
}

// Empty reports whether the layer holds no value.
func (m *MemLayer) Empty() bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.index) == 0
}

// Put adds the value v of k at lsn. Each key's values must come in
// increasing LSN order, within the layer's range. The layer keeps v
// itself, not a copy: v.Data must never change afterwards. (Copying each
// value, as the layer did, was a tenth of the page server's CPU in a bulk
// load; the ingest's values are all made for the write: a record's copy,
// a page rebuilt or restored.)
func (m *MemLayer) Put(k key.Key, lsn pgdata.LSN, v value.Value) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if lsn < m.start || lsn >= m.end {
		return fmt.Errorf("put %v at %v outside in-memory layer [%v, %v): %w", k, lsn, m.start, m.end, ErrOutOfOrder)
	}
	vs := m.index[k]
	if n := len(vs); n > 0 && vs[n-1].lsn >= lsn {
		return fmt.Errorf("put %v at %v after its value at %v: %w", k, lsn, vs[n-1].lsn, ErrOutOfOrder)
	}
	m.index[k] = append(vs, version{lsn, v})
	m.size += int64(len(v.Data)) + entryOverhead
	m.maxLSN = max(m.maxLSN, lsn)
	return nil
}

// Freeze fixes the layer's end LSN (exclusive); no value may be at end or
// later.
func (m *MemLayer) Freeze(end pgdata.LSN) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(m.index) > 0 && m.maxLSN >= end {
		return fmt.Errorf("freeze in-memory layer at %v: it holds a value at %v", end, m.maxLSN)
	}
	m.end = end
	return nil
}

// Collect implements Layer.
func (m *MemLayer) Collect(k key.Key, lsns LSNRange, st *ReconstructState) error {
	m.mu.RLock()
	vs := m.index[k]
	m.mu.RUnlock()
	// vs is append-only and entries below len(vs) never change, so it can
	// be read without the lock.
	i := sort.Search(len(vs), func(i int) bool { return vs[i].lsn >= lsns.End })
	for i--; i >= 0 && vs[i].lsn >= lsns.Start; i-- {
		st.add(vs[i].lsn, vs[i].val)
		if st.Complete {
			return nil
		}
	}
	return nil
}

// sortedKeys returns the layer's keys in order.
func (m *MemLayer) sortedKeys() []key.Key {
	m.mu.RLock()
	keys := make([]key.Key, 0, len(m.index))
	for k := range m.index {
		keys = append(keys, k)
	}
	m.mu.RUnlock()
	sort.Slice(keys, func(i, j int) bool { return keys[i].Less(keys[j]) })
	return keys
}

// WriteDelta writes the frozen layer as a delta layer file of the whole key
// space in dir, fsynced, and returns it. The caller fsyncs dir.
func (m *MemLayer) WriteDelta(env *Env, dir string) (*File, error) {
	d := m.Desc()
	if d.LSNs.End == pgdata.MaxLSN {
		return nil, fmt.Errorf("write in-memory layer from %v: not frozen", d.LSNs.Start)
	}
	w, err := NewWriter(env, dir)
	if err != nil {
		return nil, err
	}
	var enc []byte // the writer copies each value: one buffer serves all
	for _, k := range m.sortedKeys() {
		m.mu.RLock()
		vs := m.index[k]
		m.mu.RUnlock()
		for _, v := range vs {
			enc = v.val.AppendEncoded(enc[:0])
			if err := w.Add(k, v.lsn, enc); err != nil {
				w.Abort()
				return nil, err
			}
		}
	}
	return w.Finish(Desc{Kind: Delta, Keys: key.All, LSNs: d.LSNs})
}
