package pgwire

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rs/zerolog"
)

// remoteListener makes every connection look as if it came from another
// host, so that a test on loopback sees what a remote client sees.
type remoteListener struct{ net.Listener }

func (l remoteListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return remoteConn{c}, nil
}

type remoteConn struct{ net.Conn }

func (remoteConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.ParseIP("192.0.2.7"), Port: 40000}
}

// TestPasswordOnlyOverTLSFromRemote: a remote client is not asked for its
// token over plaintext (28000, before it sends it), and is over TLS.
func TestPasswordOnlyOverTLSFromRemote(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	asked := 0
	srv := NewServer(Config{TLS: selfSignedTLS(t), Authenticate: func(_ context.Context, _ map[string]string, pw string) (any, error) {
		asked++
		if pw != "tok" {
			return nil, errors.New("bad token")
		}
		return pw, nil
	}}, HandlerFunc(testHandler), zerolog.New(zerolog.NewTestWriter(t)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, remoteListener{ln}) }()
	defer func() {
		cancel()
		<-done
	}()
	port := ln.Addr().(*net.TCPAddr).Port
	cctx, ccancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer ccancel()
	_, err = pgconn.Connect(cctx, fmt.Sprintf("host=127.0.0.1 port=%d user=u sslmode=disable password=tok", port))
	var pe *pgconn.PgError
	if !errors.As(err, &pe) || pe.Code != CodeInvalidAuthorization || !strings.Contains(pe.Message, "only over TLS") {
		t.Fatalf("plaintext from a remote host: got %v, want 28000 saying tokens go only over TLS", err)
	}
	if asked != 0 {
		t.Fatalf("plaintext from a remote host: the password was checked %d times, want never asked", asked)
	}
	c, err := pgconn.Connect(cctx, fmt.Sprintf("host=127.0.0.1 port=%d user=u sslmode=require password=tok", port))
	if err != nil {
		t.Fatalf("TLS from a remote host: %v", err)
	}
	c.Close(cctx)
}
