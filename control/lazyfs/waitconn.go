package lazyfs

import (
	"io"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// waitConn is the TCP connection of a page stream. Once the stream is up
// (setDirect), a read that finds nothing waits for the page server's
// answer in the reading thread, in poll(2) bounded by the read deadline,
// instead of parking the goroutine in Go's network poller.
//
// A fetch is a FUSE request, read from /dev/fuse by a thread blocked in
// read(2), which then sends the page request and waits for the answer.
// Parked in the netpoller, the wait went through the scheduler: the
// thread looked for other work and slept, the netpoller's thread woke
// when the answer came and ran the goroutine, and Go's sysmon, seeing
// threads blocked in /dev/fuse holding every P, took Ps back and handed
// them off, polling every 20 µs (docs/performance.md, "The FUSE server's
// CPU per fetch"). Waiting in poll, the thread that read the request
// sleeps until the answer and goes on with it. The caller keeps more Ps
// than threads blocked in system calls (Mount raises GOMAXPROCS), so
// that sysmon has none to take back.
type waitConn struct {
	*net.TCPConn
	raw syscall.RawConn

	mu       sync.Mutex
	deadline time.Time // of reads
	direct   bool
}

func newWaitConn(c *net.TCPConn) (*waitConn, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	return &waitConn{TCPConn: c, raw: raw}, nil
}

// setDirect makes reads wait in poll(2) from now on.
func (c *waitConn) setDirect() {
	c.mu.Lock()
	c.direct = true
	c.mu.Unlock()
}

func (c *waitConn) SetDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
	return c.TCPConn.SetDeadline(t)
}

func (c *waitConn) SetReadDeadline(t time.Time) error {
	c.mu.Lock()
	c.deadline = t
	c.mu.Unlock()
	return c.TCPConn.SetReadDeadline(t)
}

// Read reads what the connection has; if it has nothing, it waits in
// poll(2) until it has or the read deadline passes (an error whose
// Timeout() is true, as the net package's).
func (c *waitConn) Read(p []byte) (int, error) {
	c.mu.Lock()
	direct, deadline := c.direct, c.deadline
	c.mu.Unlock()
	if !direct || len(p) == 0 {
		return c.TCPConn.Read(p)
	}
	var n int
	var err error
	waited := false
	rerr := c.raw.Read(func(fd uintptr) bool {
		for {
			n, err = unix.Read(int(fd), p)
			if err == unix.EINTR {
				continue
			}
			if err != unix.EAGAIN {
				return true
			}
			wait := -1
			if !deadline.IsZero() {
				d := time.Until(deadline)
				if d <= 0 {
					n, err = 0, os.ErrDeadlineExceeded
					return true
				}
				wait = int((d + time.Millisecond - 1) / time.Millisecond)
			}
			fds := []unix.PollFd{{Fd: int32(fd), Events: unix.POLLIN}}
			if _, perr := unix.Poll(fds, wait); perr != nil && perr != unix.EINTR {
				n, err = 0, perr
				return true
			}
			waited = true
		}
	})
	if waited {
		yieldNow()
	}
	if rerr != nil {
		return 0, &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: rerr}
	}
	if err != nil {
		if err != os.ErrDeadlineExceeded {
			err = os.NewSyscallError("read", err)
		}
		return 0, &net.OpError{Op: "read", Net: "tcp", Source: c.LocalAddr(), Addr: c.RemoteAddr(), Err: err}
	}
	if n == 0 {
		return 0, io.EOF
	}
	return n, nil
}

// yieldEvery is how often (in nanoseconds) a thread that waited in poll
// yields its P.
const yieldEvery = int64(2 * time.Millisecond)

var lastYield atomic.Int64

// yieldNow yields the P (runtime.Gosched) unless a thread that waited
// did within yieldEvery.
// A goroutine that only ever blocks in system calls never goes through
// the scheduler: to sysmon it looks like one running for more than 10
// ms, which it preempts (a signal) and whose P it takes back at its next
// system call, setting itself back to polling every 20 µs. A Gosched
// wakes another thread (wakep), so not at every wait.
func yieldNow() {
	now := time.Now().UnixNano()
	if last := lastYield.Load(); now-last > yieldEvery && lastYield.CompareAndSwap(last, now) {
		runtime.Gosched()
	}
}
