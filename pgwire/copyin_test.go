package pgwire

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"net"
	"strconv"
	"testing"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rs/zerolog"
)

// serveHandler runs a Server with h on a loopback port until the test ends
// and returns a connection string for it.
func serveHandler(t *testing.T, h Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(Config{}, h, zerolog.New(zerolog.NewTestWriter(t)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return "host=127.0.0.1 port=" + strconv.Itoa(ln.Addr().(*net.TCPAddr).Port) + " user=zenith dbname=x sslmode=disable"
}

// failingReader yields some data, then fails, so that pgconn sends CopyFail.
type failingReader struct{ sent bool }

func (r *failingReader) Read(p []byte) (int, error) {
	if r.sent {
		return 0, errors.New("disk on fire")
	}
	r.sent = true
	return copy(p, "partial"), nil
}

func TestCopyIn(t *testing.T) {
	// got receives what each upload's handler read, or its error.
	type upload struct {
		data []byte
		err  error
	}
	got := make(chan upload, 1)
	connStr := serveHandler(t, HandlerFunc(func(ctx context.Context, s *Session, cmd string, args []string) error {
		switch cmd {
		case "upload":
			r, err := s.CopyIn()
			if err != nil {
				return err
			}
			b, err := io.ReadAll(r)
			got <- upload{b, err}
			if err != nil {
				return err
			}
			if r.BytesRead() != int64(len(b)) {
				return Errorf(CodeInternalError, "BytesRead %d, read %d", r.BytesRead(), len(b))
			}
			if err := s.Columns("bytes"); err != nil {
				return err
			}
			return s.Row(strconv.Itoa(len(b)))
		case "ping":
			if err := s.Columns("pong"); err != nil {
				return err
			}
			return s.Row("pong")
		}
		return Errorf(CodeSyntaxError, "unknown command %q", cmd)
	}))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	c, err := pgconn.Connect(ctx, connStr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)

	// Several MiB, so the client sends many CopyData messages.
	want := make([]byte, 3<<20+17)
	rand.Read(want)
	if _, err := c.CopyFrom(ctx, bytes.NewReader(want), "upload"); err != nil {
		t.Fatalf("CopyFrom: %v", err)
	}
	if u := <-got; u.err != nil || !bytes.Equal(u.data, want) {
		t.Fatalf("handler read %d bytes (err %v), want the %d sent", len(u.data), u.err, len(want))
	}

	// A client-side failure reaches the handler as CopyFail and comes back
	// as the command's error; the session goes on.
	_, err = c.CopyFrom(ctx, &failingReader{}, "upload")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != CodeQueryCanceled {
		t.Fatalf("CopyFrom of a failing reader: got %v, want SQLSTATE %s", err, CodeQueryCanceled)
	}
	var ce *Error
	if u := <-got; !errors.As(u.err, &ce) || ce.Code != CodeQueryCanceled {
		t.Errorf("handler got %v, want a 57014 error", u.err)
	}
	res, err := c.Exec(ctx, "ping").ReadAll()
	if err != nil || len(res) != 1 || len(res[0].Rows) != 1 || string(res[0].Rows[0][0]) != "pong" {
		t.Fatalf("ping after a failed COPY: %v %v", res, err)
	}

	// COPY IN needs the data to follow the command, which Describe (run
	// ahead of Execute) cannot give.
	rr := c.ExecParams(ctx, "upload", nil, nil, nil, nil).Read()
	if !errors.As(rr.Err, &pgErr) || pgErr.Code != CodeFeatureNotSupported {
		t.Errorf("upload through the extended protocol: got %v, want SQLSTATE %s", rr.Err, CodeFeatureNotSupported)
	}
}
