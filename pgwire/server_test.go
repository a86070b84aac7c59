package pgwire

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os/exec"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/rs/zerolog"
)

// testHandler is a small command set exercising every kind of answer.
func testHandler(ctx context.Context, s *Session, cmd string, args []string) error {
	word, rest, _ := strings.Cut(cmd, " ")
	switch word {
	case "hello":
		if err := s.Columns("greeting", "n"); err != nil {
			return err
		}
		for i := 1; i <= 3; i++ {
			if err := s.Row("hello", strconv.Itoa(i)); err != nil {
				return err
			}
		}
		return nil
	case "echo":
		if err := s.Columns("arg"); err != nil {
			return err
		}
		for _, a := range args {
			if err := s.Row(a); err != nil {
				return err
			}
		}
		return nil
	case "fail":
		return &Error{Code: CodeUndefinedObject, Message: "no such thing", Hint: "try another"}
	case "crash":
		return errors.New("plain Go error")
	case "stream":
		n, err := strconv.Atoi(rest)
		if err != nil {
			return &Error{Code: CodeSyntaxError, Message: "stream wants a byte count"}
		}
		w, err := s.CopyOut()
		if err != nil {
			return err
		}
		chunk := bytes.Repeat([]byte("0123456789"), 1000)
		for n > 0 {
			k := min(n, len(chunk))
			if _, err := w.Write(chunk[:k]); err != nil {
				return err
			}
			n -= k
		}
		return w.Close()
	case "both", "queue":
		// "queue" only queues the echoes: what sends them is the flush
		// before Receive waits for the client.
		c, err := s.CopyBoth()
		if err != nil {
			return err
		}
		send := c.Send
		if word == "queue" {
			send = c.Queue
		}
		for {
			msg, err := c.Receive()
			if errors.Is(err, ErrCopyDone) {
				return c.Close()
			}
			if err != nil {
				return err
			}
			if err := send(append([]byte("echo:"), msg...)); err != nil {
				return err
			}
		}
	}
	return &Error{Code: CodeSyntaxError, Message: fmt.Sprintf("unknown command %q", word)}
}

type testServer struct {
	addr string
	port int
}

func startServer(t *testing.T, cfg Config) testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(cfg, HandlerFunc(testHandler), zerolog.New(zerolog.NewTestWriter(t)))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Serve did not return after cancel")
		}
	})
	a := ln.Addr().(*net.TCPAddr)
	return testServer{addr: a.String(), port: a.Port}
}

func (ts testServer) connString(extra string) string {
	return fmt.Sprintf("host=127.0.0.1 port=%d user=zenith dbname=x sslmode=disable %s", ts.port, extra)
}

func connect(t *testing.T, connStr string) *pgconn.PgConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	c, err := pgconn.Connect(ctx, connStr)
	if err != nil {
		t.Fatalf("connect: %v", err)
	}
	t.Cleanup(func() { c.Close(context.Background()) })
	return c
}

func TestSimpleQueryRowsAndErrors(t *testing.T) {
	ts := startServer(t, Config{})
	c := connect(t, ts.connString(""))
	ctx := context.Background()

	res, err := c.Exec(ctx, "hello;").ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	if got, want := len(res[0].Rows), 3; got != want {
		t.Fatalf("rows: got %d, want %d", got, want)
	}
	if got, want := string(res[0].Rows[2][1]), "3"; got != want {
		t.Errorf("row 3 column n: got %q, want %q", got, want)
	}
	if got, want := res[0].CommandTag.String(), "SELECT 3"; got != want {
		t.Errorf("tag: got %q, want %q", got, want)
	}

	_, err = c.Exec(ctx, "fail").ReadAll()
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != CodeUndefinedObject || pgErr.Hint != "try another" {
		t.Fatalf("fail: got %v, want SQLSTATE %s with hint", err, CodeUndefinedObject)
	}
	_, err = c.Exec(ctx, "crash").ReadAll()
	if !errors.As(err, &pgErr) || pgErr.Code != CodeInternalError {
		t.Fatalf("crash: got %v, want SQLSTATE %s", err, CodeInternalError)
	}
	// The session goes on after errors.
	if _, err := c.Exec(ctx, "hello").ReadAll(); err != nil {
		t.Fatalf("query after errors: %v", err)
	}
	if _, err := c.Exec(ctx, "").ReadAll(); err != nil {
		t.Fatalf("empty query: %v", err)
	}
}

func TestExtendedProtocol(t *testing.T) {
	ts := startServer(t, Config{})
	ctx := context.Background()
	cfg, err := pgx.ParseConfig(ts.connString(""))
	if err != nil {
		t.Fatal(err)
	}
	// Exec mode: Parse, Bind, Describe portal, Execute, Sync, as libpq's
	// PQexecParams does.
	cfg.DefaultQueryExecMode = pgx.QueryExecModeExec
	conn, err := pgx.ConnectConfig(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close(ctx)

	rows, err := conn.Query(ctx, "echo $1 $2", "a b", "0/16B9188")
	if err != nil {
		t.Fatal(err)
	}
	got, err := pgx.CollectRows(rows, pgx.RowTo[string])
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"a b", "0/16B9188"}; strings.Join(got, "|") != strings.Join(want, "|") {
		t.Errorf("echo: got %q, want %q", got, want)
	}
	_, err = conn.Exec(ctx, "fail $1", "x")
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != CodeUndefinedObject {
		t.Fatalf("fail: got %v, want SQLSTATE %s", err, CodeUndefinedObject)
	}
	var n string
	if err := conn.QueryRow(ctx, "hello").Scan(new(string), &n); err != nil || n != "1" {
		t.Fatalf("hello after error: n=%q err=%v", n, err)
	}
}

func TestCopyOut(t *testing.T) {
	ts := startServer(t, Config{})
	c := connect(t, ts.connString(""))
	var buf bytes.Buffer
	const size = 1<<20 + 12345
	tag, err := c.CopyTo(context.Background(), &buf, "stream "+strconv.Itoa(size))
	if err != nil {
		t.Fatal(err)
	}
	if buf.Len() != size {
		t.Fatalf("copied %d bytes, want %d", buf.Len(), size)
	}
	if !bytes.HasPrefix(buf.Bytes(), []byte("0123456789")) || tag.String() != "COPY" {
		t.Errorf("unexpected stream start %q or tag %q", buf.Bytes()[:10], tag)
	}
}

func TestCopyBoth(t *testing.T) {
	ts := startServer(t, Config{})
	c := connect(t, ts.connString(""))
	fe := c.Frontend()
	fe.Send(&pgproto3.Query{String: "both"})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	msg, err := fe.Receive()
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := msg.(*pgproto3.CopyBothResponse); !ok {
		t.Fatalf("got %T, want CopyBothResponse", msg)
	}
	for i := 0; i < 3; i++ {
		fe.Send(&pgproto3.CopyData{Data: []byte{byte('a' + i)}})
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		msg, err := fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		cd, ok := msg.(*pgproto3.CopyData)
		if want := "echo:" + string(rune('a'+i)); !ok || string(cd.Data) != want {
			t.Fatalf("got %#v, want CopyData %q", msg, want)
		}
	}
	fe.Send(&pgproto3.CopyDone{})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	var seen []string
	for {
		msg, err := fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		seen = append(seen, fmt.Sprintf("%T", msg))
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			break
		}
	}
	if want := "*pgproto3.CopyDone *pgproto3.CommandComplete *pgproto3.ReadyForQuery"; strings.Join(seen, " ") != want {
		t.Errorf("end of COPY BOTH: got %v, want %s", seen, want)
	}
}

// TestCopyBothQueue checks that what a handler queues without flushing
// reaches the client once the handler waits for the client's next
// message: for pipelined messages sent together, and for one alone.
func TestCopyBothQueue(t *testing.T) {
	ts := startServer(t, Config{})
	c := connect(t, ts.connString(""))
	// A queued message that is never sent fails the test, not hangs it.
	if err := c.Conn().SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
		t.Fatal(err)
	}
	fe := c.Frontend()
	fe.Send(&pgproto3.Query{String: "queue"})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	if msg, err := fe.Receive(); err != nil {
		t.Fatal(err)
	} else if _, ok := msg.(*pgproto3.CopyBothResponse); !ok {
		t.Fatalf("got %T, want CopyBothResponse", msg)
	}
	for _, batch := range []string{"abc", "d"} {
		for _, m := range batch {
			fe.Send(&pgproto3.CopyData{Data: []byte(string(m))})
		}
		if err := fe.Flush(); err != nil {
			t.Fatal(err)
		}
		for _, m := range batch {
			msg, err := fe.Receive()
			if err != nil {
				t.Fatalf("echo of %q: %v", m, err)
			}
			cd, ok := msg.(*pgproto3.CopyData)
			if want := "echo:" + string(m); !ok || string(cd.Data) != want {
				t.Fatalf("got %#v, want CopyData %q", msg, want)
			}
		}
	}
	fe.Send(&pgproto3.CopyDone{})
	if err := fe.Flush(); err != nil {
		t.Fatal(err)
	}
	for {
		msg, err := fe.Receive()
		if err != nil {
			t.Fatal(err)
		}
		if _, ok := msg.(*pgproto3.ReadyForQuery); ok {
			break
		}
	}
}

// TestMalformedInput sends bytes no client would and checks the server
// answers or drops that connection and goes on serving others.
func TestMalformedInput(t *testing.T) {
	ts := startServer(t, Config{})
	inputs := map[string][]byte{
		"garbage":          []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"),
		"huge length":      {0x7f, 0xff, 0xff, 0xff, 0, 3, 0, 0},
		"short length":     {0, 0, 0, 2},
		"bad protocol":     {0, 0, 0, 8, 0, 9, 0, 0},
		"unterminated kv":  append([]byte{0, 0, 0, 14, 0, 3, 0, 0}, []byte("user")...),
		"message too long": append(startupBytes(), append([]byte{'Q', 0x7f, 0, 0, 0}, bytes.Repeat([]byte("x"), 100)...)...),
		"query no nul":     append(startupBytes(), 'Q', 0, 0, 0, 8, 'a', 'b', 'c', 'd'),
		"unknown type":     append(startupBytes(), 'z', 0, 0, 0, 4),
	}
	for name, in := range inputs {
		t.Run(name, func(t *testing.T) {
			conn, err := net.Dial("tcp", ts.addr)
			if err != nil {
				t.Fatal(err)
			}
			_ = conn.SetDeadline(time.Now().Add(3 * time.Second))
			conn.Write(in)
			buf := make([]byte, 4096)
			for {
				if _, err := conn.Read(buf); err != nil {
					break
				}
			}
			conn.Close()
			c := connect(t, ts.connString(""))
			if _, err := c.Exec(context.Background(), "hello").ReadAll(); err != nil {
				t.Fatalf("server stopped serving after %s: %v", name, err)
			}
		})
	}
}

func startupBytes() []byte {
	body := []byte{0, 3, 0, 0}
	body = append(body, "user\x00zenith\x00\x00"...)
	return append([]byte{0, 0, 0, byte(len(body) + 4)}, body...)
}

func TestPasswordAuthentication(t *testing.T) {
	ts := startServer(t, Config{Authenticate: func(ctx context.Context, params map[string]string, pw string) (any, error) {
		if pw != "s3cret" {
			return nil, errors.New("bad token")
		}
		return params["user"], nil
	}})
	ctx := context.Background()
	_, err := pgconn.Connect(ctx, ts.connString("password=wrong"))
	var pgErr *pgconn.PgError
	if !errors.As(err, &pgErr) || pgErr.Code != CodeInvalidPassword {
		t.Fatalf("wrong password: got %v, want SQLSTATE %s", err, CodeInvalidPassword)
	}
	c := connect(t, ts.connString("password=s3cret"))
	if _, err := c.Exec(ctx, "hello").ReadAll(); err != nil {
		t.Fatal(err)
	}
}

func TestTLSWithPsql(t *testing.T) {
	ts := startServer(t, Config{TLS: selfSignedTLS(t), RequireTLS: true})
	ctx := context.Background()
	_, err := pgconn.Connect(ctx, ts.connString(""))
	if err == nil || !strings.Contains(err.Error(), "requires TLS") {
		t.Fatalf("plain connection to a TLS-only server: got %v, want a 'requires TLS' error", err)
	}
	connStr := strings.Replace(ts.connString(""), "sslmode=disable", "sslmode=require", 1)
	out, err := exec.Command("psql", "-X", "-A", "-t", "-c", "hello", connStr).CombinedOutput()
	if err != nil {
		t.Fatalf("psql over TLS: %v\n%s", err, out)
	}
	if got, want := strings.TrimSpace(string(out)), "hello|1\nhello|2\nhello|3"; got != want {
		t.Errorf("psql printed %q, want %q", got, want)
	}
}

func selfSignedTLS(t *testing.T) *tls.Config {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1),
		Subject:      pkix.Name{CommonName: "127.0.0.1"},
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(time.Hour),
		IPAddresses:  []net.IP{net.ParseIP("127.0.0.1")},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	return &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{der}, PrivateKey: key}}}
}
