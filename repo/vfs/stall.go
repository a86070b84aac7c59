package vfs

import (
	"sync"
	"time"
)

// Gate holds the operations a rule picks until it is released: a disk
// that stops answering (a stalled fsync, a hung network file system), made
// deterministic for tests. Use its Rule with Faulty.SetRule.
type Gate struct {
	op      Op
	match   func(name string) bool
	held    chan struct{} // closed when the first operation is held
	heldOne sync.Once
	open    chan struct{} // closed by Release
	release sync.Once
}

// NewGate returns a gate that holds every operation op on a name that
// match accepts, from the first until Release.
func NewGate(op Op, match func(name string) bool) *Gate {
	return &Gate{op: op, match: match, held: make(chan struct{}), open: make(chan struct{})}
}

// Rule is the rule that holds the operations: it returns (nil: the
// operation goes on) once the gate is released.
func (g *Gate) Rule(op Op, name string) error {
	if op != g.op || !g.match(name) {
		return nil
	}
	select {
	case <-g.open:
		return nil
	default:
	}
	g.heldOne.Do(func() { close(g.held) })
	<-g.open
	return nil
}

// Held is closed once an operation is being held.
func (g *Gate) Held() <-chan struct{} { return g.held }

// Release lets the held operations, and every later one, go on.
func (g *Gate) Release() { g.release.Do(func() { close(g.open) }) }

// InProgress records which write a writer is doing and since when, so that
// a status can say that it has been at it for too long: a disk that does
// not answer leaves its caller waiting in the kernel with no error to
// report. The zero value is ready to use; one writer at a time.
type InProgress struct {
	mu    sync.Mutex
	op    string
	since time.Time
}

// Begin records that op starts now; the function it returns records that
// it ended.
func (p *InProgress) Begin(op string) (end func()) {
	p.mu.Lock()
	p.op, p.since = op, time.Now()
	p.mu.Unlock()
	return func() {
		p.mu.Lock()
		p.op, p.since = "", time.Time{}
		p.mu.Unlock()
	}
}

// Current returns the write in progress and when it began; "" if none.
func (p *InProgress) Current() (op string, since time.Time) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.op, p.since
}

// Stalled returns the write in progress if it began more than threshold
// before now; "" otherwise.
func (p *InProgress) Stalled(now time.Time, threshold time.Duration) (op string, since time.Time) {
	op, since = p.Current()
	if op == "" || now.Sub(since) <= threshold {
		return "", time.Time{}
	}
	return op, since
}
