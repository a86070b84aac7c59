package repo

import (
	"container/heap"

	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/layer"
)

// merger walks several layer files' entries in key and LSN order. The
// files must not hold the same key at the same LSN (L0 layers have
// disjoint LSN ranges).
type merger struct {
	its  iterHeap
	all  []*layer.Iterator
	cur  *layer.Iterator
	fail error
}

func newMerger(files []*layer.File) (*merger, error) {
	m := &merger{}
	for _, f := range files {
		it, err := f.NewIterator(key.All)
		if err != nil {
			m.close()
			return nil, err
		}
		m.all = append(m.all, it)
		if it.Next() {
			m.its = append(m.its, it)
		} else if err := it.Err(); err != nil {
			m.close()
			return nil, err
		}
	}
	heap.Init(&m.its)
	return m, nil
}

// next advances to the next entry in order.
func (m *merger) next() bool {
	if m.cur != nil {
		if m.cur.Next() {
			heap.Push(&m.its, m.cur)
		} else if err := m.cur.Err(); err != nil {
			m.fail = err
			return false
		}
		m.cur = nil
	}
	if len(m.its) == 0 {
		return false
	}
	m.cur = heap.Pop(&m.its).(*layer.Iterator)
	return true
}

func (m *merger) top() *layer.Iterator { return m.cur }
func (m *merger) err() error           { return m.fail }

// close releases the iterators; it may be called more than once.
func (m *merger) close() {
	for _, it := range m.all {
		// Errors were seen through Next; closing only releases.
		_ = it.Close()
	}
	m.all = nil
}

type iterHeap []*layer.Iterator

func (h iterHeap) Len() int { return len(h) }
func (h iterHeap) Less(i, j int) bool {
	if c := h[i].Key().Compare(h[j].Key()); c != 0 {
		return c < 0
	}
	return h[i].LSN() < h[j].LSN()
}
func (h iterHeap) Swap(i, j int) { h[i], h[j] = h[j], h[i] }
func (h *iterHeap) Push(x any)   { *h = append(*h, x.(*layer.Iterator)) }
func (h *iterHeap) Pop() any {
	old := *h
	it := old[len(old)-1]
	*h = old[:len(old)-1]
	return it
}
