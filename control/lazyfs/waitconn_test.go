package lazyfs

import (
	"errors"
	"io"
	"net"
	"os"
	"testing"
	"time"
)

// waitPair is a loopback TCP connection: the client end as a direct
// waitConn, and the server end.
func waitPair(t *testing.T) (*waitConn, net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	accepted := make(chan net.Conn, 1)
	go func() {
		c, err := ln.Accept()
		if err != nil {
			close(accepted)
			return
		}
		accepted <- c
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	srv, ok := <-accepted
	if !ok {
		t.Fatal("accept failed")
	}
	wc, err := newWaitConn(c.(*net.TCPConn))
	if err != nil {
		t.Fatal(err)
	}
	wc.setDirect()
	t.Cleanup(func() { wc.Close(); srv.Close() })
	return wc, srv
}

// TestWaitConnRead: a read that finds nothing waits (in poll) for what
// the peer sends later and returns it; one after the peer closed is EOF.
func TestWaitConnRead(t *testing.T) {
	wc, srv := waitPair(t)
	if err := wc.SetDeadline(time.Now().Add(time.Minute)); err != nil {
		t.Fatal(err)
	}
	sent := make(chan error, 1)
	go func() {
		time.Sleep(50 * time.Millisecond)
		_, err := srv.Write([]byte("page"))
		sent <- err
	}()
	buf := make([]byte, 16)
	n, err := wc.Read(buf)
	if err != nil || string(buf[:n]) != "page" {
		t.Fatalf("read %q, %v; want \"page\"", buf[:n], err)
	}
	if err := <-sent; err != nil {
		t.Fatal(err)
	}
	srv.Close()
	if n, err := wc.Read(buf); n != 0 || err != io.EOF {
		t.Fatalf("read after the peer closed: %d, %v; want 0, EOF", n, err)
	}
}

// TestWaitConnDeadline: a read that waits past the read deadline fails
// as the net package's reads do, with an error whose Timeout() is true
// (PageClient turns it into ErrFetchTimeout), and so does one that starts
// after the deadline.
func TestWaitConnDeadline(t *testing.T) {
	wc, _ := waitPair(t)
	if err := wc.SetDeadline(time.Now().Add(100 * time.Millisecond)); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, err := wc.Read(make([]byte, 16))
		done <- err
	}()
	var err error
	select {
	case err = <-done:
	case <-time.After(time.Minute):
		t.Fatal("a read with a deadline of 100 ms still waits after a minute")
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() || !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Fatalf("read past its deadline: %v; want a timeout", err)
	}
	if _, err := wc.Read(make([]byte, 16)); !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read after the deadline: %v; want a timeout", err)
	}
}
