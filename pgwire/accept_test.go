package pgwire

import (
	"context"
	"errors"
	"net"
	"os"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/rs/zerolog"
)

// failingListener fails its first failures accepts with err, then
// accepts as its listener does.
type failingListener struct {
	net.Listener
	err      error
	failures atomic.Int32
}

func (l *failingListener) Accept() (net.Conn, error) {
	if l.failures.Add(-1) >= 0 {
		return nil, &net.OpError{Op: "accept", Net: "tcp", Err: os.NewSyscallError("accept4", l.err)}
	}
	return l.Listener.Accept()
}

// TestServeAcceptErrors checks that an accept failing for want of file
// descriptors is retried (the server answers afterwards), and that one
// failing otherwise ends Serve with that error rather than nil.
func TestServeAcceptErrors(t *testing.T) {
	tests := []struct {
		name     string
		err      error
		failures int32
		serves   bool
	}{
		{"out of descriptors", syscall.EMFILE, 5, true},
		{"system file table full", syscall.ENFILE, 2, true},
		{"listener broken", syscall.EBADF, 1, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			inner, err := net.Listen("tcp", "127.0.0.1:0")
			if err != nil {
				t.Fatal(err)
			}
			ln := &failingListener{Listener: inner, err: tt.err}
			ln.failures.Store(tt.failures)
			srv := NewServer(Config{}, HandlerFunc(testHandler), zerolog.New(zerolog.NewTestWriter(t)))
			ctx, cancel := context.WithCancel(context.Background())
			defer cancel()
			done := make(chan error, 1)
			go func() { done <- srv.Serve(ctx, ln) }()
			if !tt.serves {
				select {
				case err := <-done:
					if !errors.Is(err, tt.err) {
						t.Errorf("Serve = %v, want an error wrapping %v", err, tt.err)
					}
				case <-time.After(10 * time.Second):
					t.Fatal("Serve goes on after a broken listener")
				}
				inner.Close()
				return
			}
			ts := testServer{addr: inner.Addr().String(), port: inner.Addr().(*net.TCPAddr).Port}
			c := connect(t, ts.connString(""))
			if _, err := c.Exec(context.Background(), "hello").ReadAll(); err != nil {
				t.Errorf("query after %d failed accepts: %v", tt.failures, err)
			}
			c.Close(context.Background())
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Serve after cancel = %v, want nil", err)
			}
		})
	}
}
