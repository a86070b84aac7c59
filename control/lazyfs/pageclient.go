package lazyfs

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/zenithdb/zenith/pageserver/api"
	"github.com/zenithdb/zenith/repo/auth"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// maxIdleStreams is how many page-stream connections the client keeps
// open between fetches.
const maxIdleStreams = 8

// streamReadBuffer is the read buffer of a page stream: 32 pages.
const streamReadBuffer = 256 << 10

// PageError is an error response of the page server to one request.
type PageError struct {
	SQLState, Message string
}

func (e *PageError) Error() string {
	return fmt.Sprintf("page server: %s (SQLSTATE %s)", e.Message, e.SQLState)
}

// ErrFetchTimeout is returned (wrapped) when the page server does not
// answer a batch within the client's timeout.
var ErrFetchTimeout = errors.New("page fetch timed out")

// PageClient fetches pages of one timeline over the page stream
// (`pagestream <tenant> <timeline>`, pageserver/pagestream.go). A batch
// of requests is pipelined: all are sent, then all answers read, so a
// batch costs one round trip; consecutive blocks are asked for with one
// getpages request. Connections are pooled; one that fails is
// closed, never reused. A connection speaks TLS and presents a token
// when PageClientOptions say so, as the page service's other clients do.
type PageClient struct {
	addr      string
	command   string
	timeout   time.Duration
	config    *pgconn.Config
	tokenFile string
	inThread  bool
	mu        sync.Mutex
	idle      []*pageStream
}

// PageClientOptions say which page service and timeline a PageClient
// reads, and what it presents there.
type PageClientOptions struct {
	// Addr is the page service's host:port.
	Addr string
	// Stream names the timeline read.
	Stream api.PageStream
	// Timeout bounds each batch, connecting included.
	Timeout time.Duration
	// CAFile, if set, is the CA that must have signed the page server's
	// certificate: the connection speaks TLS and checks the server's
	// name (sslmode=verify-full). Empty: plaintext.
	CAFile string
	// TokenFile, if set, holds the token presented as the password. It
	// is read again for every new connection, so a token renewed in
	// place is used without a restart.
	TokenFile string
	// WaitInThread: a fetch waits for the page server's answers in
	// the calling thread, in poll(2), rather than in Go's network
	// poller (waitConn). For the FUSE server, which keeps more Ps than
	// threads blocked in system calls (Mount).
	WaitInThread bool
}

// pageStream is one connection in COPY BOTH mode.
type pageStream struct {
	conn net.Conn
	fe   *pgproto3.Frontend
}

// NewPageClient returns a client of the page service for one timeline.
// A CA file that cannot be read is an error here, before any fetch.
func NewPageClient(o PageClientOptions) (*PageClient, error) {
	host, port, err := net.SplitHostPort(o.Addr)
	if err != nil {
		return nil, fmt.Errorf("page server address %q: %w", o.Addr, err)
	}
	conn := fmt.Sprintf("host=%s port=%s user=zenith dbname=zenith application_name=zenith-lazyfs %s",
		host, port, auth.ClientOptions{CAFile: o.CAFile}.ConnParams())
	cfg, err := pgconn.ParseConfig(conn)
	if err != nil {
		return nil, fmt.Errorf("page server at %s: %w", o.Addr, err)
	}
	return &PageClient{addr: o.Addr, command: o.Stream.String(),
		timeout: o.Timeout, config: cfg, tokenFile: o.TokenFile, inThread: o.WaitInThread}, nil
}

// Check opens a page stream within the client's timeout and keeps it for
// the first fetch: a page server that cannot be reached, a certificate it
// does not trust or a token it refuses is an error here, at start-up,
// rather than an I/O error in a query later.
func (c *PageClient) Check(ctx context.Context) error {
	deadline := time.Now().Add(c.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	s, err := c.dial(deadline)
	if err != nil {
		return err
	}
	c.put(s)
	return nil
}

// GetPages fetches blocks of one fork as of lsn, in order, into pages
// (one 8 KiB slice per block).
func (c *PageClient) GetPages(ctx context.Context, lsn pgdata.LSN, rel pgdata.RelFileNode, fork pgdata.ForkNumber, blocks []pgdata.BlockNumber) ([][]byte, error) {
	pages := make([][]byte, len(blocks))
	err := c.EachPage(ctx, lsn, rel, fork, blocks, func(i int, page []byte) error {
		pages[i] = append([]byte(nil), page...)
		return nil
	})
	if err != nil {
		return nil, err
	}
	return pages, nil
}

// EachPage fetches blocks of one fork as of lsn and calls fn with each
// page as it arrives, i its index in blocks: the caller can use the
// first pages of a batch while the rest are on their way. The page is
// only valid during the call. An error response for some blocks is a
// *PageError once the others are delivered; an error of fn ends the
// batch (and the connection, whose answers are left unread).
func (c *PageClient) EachPage(ctx context.Context, lsn pgdata.LSN, rel pgdata.RelFileNode, fork pgdata.ForkNumber, blocks []pgdata.BlockNumber, fn func(i int, page []byte) error) error {
	deadline := time.Now().Add(c.timeout)
	if d, ok := ctx.Deadline(); ok && d.Before(deadline) {
		deadline = d
	}
	s, pooled, err := c.get(deadline)
	if err != nil {
		return err
	}
	delivered := 0
	count := func(i int, page []byte) error {
		delivered++
		return fn(i, page)
	}
	err = s.eachPage(deadline, lsn, rel, fork, blocks, count)
	var pe *PageError
	if err != nil && !errors.As(err, &pe) {
		s.conn.Close()
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			return fmt.Errorf("%w after %v: %v", ErrFetchTimeout, c.timeout, err)
		}
		if !pooled || delivered > 0 {
			return err
		}
		// A pooled connection may have died idle (the page server
		// restarted): one more try on a new one.
		if s, err = c.dial(deadline); err != nil {
			return err
		}
		if err = s.eachPage(deadline, lsn, rel, fork, blocks, count); err != nil && !errors.As(err, &pe) {
			s.conn.Close()
			return err
		}
	}
	c.put(s)
	return err
}

// Close ends the idle connections' page streams (CopyDone, Terminate,
// so the page server sees a client leave, not a broken connection) and
// closes them.
func (c *PageClient) Close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, s := range c.idle {
		s.conn.SetDeadline(time.Now().Add(time.Second))
		s.fe.Send(&pgproto3.CopyDone{})
		s.fe.Send(&pgproto3.Terminate{})
		_ = s.fe.Flush()
		s.conn.Close()
	}
	c.idle = nil
}

// get returns an idle connection (pooled) or a new one.
func (c *PageClient) get(deadline time.Time) (s *pageStream, pooled bool, err error) {
	c.mu.Lock()
	if n := len(c.idle); n > 0 {
		s := c.idle[n-1]
		c.idle = c.idle[:n-1]
		c.mu.Unlock()
		return s, true, nil
	}
	c.mu.Unlock()
	s, err = c.dial(deadline)
	return s, false, err
}

func (c *PageClient) put(s *pageStream) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.idle) >= maxIdleStreams {
		s.conn.Close()
		return
	}
	c.idle = append(c.idle, s)
}

// dial connects (TLS and the token as the client has them), starts up
// and enters the page stream.
func (c *PageClient) dial(deadline time.Time) (*pageStream, error) {
	cfg := c.config.Copy()
	if c.tokenFile != "" {
		tok, err := readToken(c.tokenFile)
		if err != nil {
			return nil, err
		}
		cfg.Password = tok
	}
	// With inThread, the stream's reads wait in the reading thread
	// (waitConn), once the start-up is done.
	var wc *waitConn
	if c.inThread {
		dialTCP := cfg.DialFunc
		cfg.DialFunc = func(ctx context.Context, network, addr string) (net.Conn, error) {
			conn, err := dialTCP(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			tc, ok := conn.(*net.TCPConn)
			if !ok {
				return conn, nil
			}
			if wc, err = newWaitConn(tc); err != nil {
				conn.Close()
				return nil, err
			}
			return wc, nil
		}
	}
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	pc, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		var pgErr *pgconn.PgError
		if errors.As(err, &pgErr) {
			return nil, fmt.Errorf("page server at %s refused the connection: %w", c.addr, pgErr)
		}
		return nil, fmt.Errorf("cannot reach the page server at %s: %w", c.addr, err)
	}
	// The page stream is COPY BOTH, which pgconn does not speak: take
	// the connection (TLS and all) from it.
	hc, err := pc.Hijack()
	if err != nil {
		pc.Close(context.Background())
		return nil, fmt.Errorf("page server at %s: %w", c.addr, err)
	}
	conn, fe := hc.Conn, hc.Frontend
	conn.SetDeadline(deadline)
	fe.Send(&pgproto3.Query{String: c.command})
	if err := fe.Flush(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("page server at %s: %w", c.addr, err)
	}
	for {
		msg, err := fe.Receive()
		if err != nil {
			conn.Close()
			return nil, fmt.Errorf("page server at %s: %w", c.addr, err)
		}
		switch m := msg.(type) {
		case *pgproto3.CopyBothResponse:
			// The answers are read through a buffer of streamReadBuffer
			// bytes: pgproto3 reads a message bigger than its 8 KiB
			// buffer (every page) with a read of its own. The server
			// sends nothing before the first request, so fe has nothing
			// buffered to carry over.
			if wc != nil {
				wc.setDirect()
			}
			br := bufio.NewReaderSize(conn, streamReadBuffer)
			return &pageStream{conn: conn, fe: pgproto3.NewFrontend(br, conn)}, nil
		case *pgproto3.ErrorResponse:
			conn.Close()
			return nil, fmt.Errorf("page server at %s: %s: %w", c.addr, c.command, pgconn.ErrorResponseToPgError(m))
		}
	}
}

// readToken reads the token in path (surrounding white space ignored).
func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("page service token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("page service token %s is empty", path)
	}
	return tok, nil
}

func (s *pageStream) eachPage(deadline time.Time, lsn pgdata.LSN, rel pgdata.RelFileNode, fork pgdata.ForkNumber, blocks []pgdata.BlockNumber, fn func(i int, page []byte) error) error {
	s.conn.SetDeadline(deadline)
	// A run of consecutive blocks is one getpages request, which the page
	// server reads in one pass; its answers come one a block, as those of
	// getpage requests do.
	for i := 0; i < len(blocks); {
		n := 1
		for i+n < len(blocks) && n < api.MaxGetPagesBlocks && blocks[i+n] == blocks[i]+pgdata.BlockNumber(n) {
			n++
		}
		req := api.PageRequest{Tag: api.TagGetPageRequest, LSN: lsn, Rel: rel, Fork: fork, Block: blocks[i]}
		if n > 1 {
			req.Tag, req.Blocks = api.TagGetPagesRequest, uint32(n)
		}
		s.fe.Send(&pgproto3.CopyData{Data: req.Encode()})
		i += n
	}
	if err := s.fe.Flush(); err != nil {
		return err
	}
	var firstErr error
	for i := range blocks {
		msg, err := s.fe.Receive()
		if err != nil {
			return err
		}
		cd, ok := msg.(*pgproto3.CopyData)
		if !ok {
			return fmt.Errorf("page stream: got %T, want CopyData", msg)
		}
		resp, err := api.ParsePageResponse(cd.Data)
		if err != nil {
			return err
		}
		switch resp.Tag {
		case api.TagGetPageResponse:
			// Receive reuses its buffer: fn copies what it keeps.
			if err := fn(i, resp.Page); err != nil {
				return err
			}
		case api.TagErrorResponse:
			if firstErr == nil {
				firstErr = &PageError{SQLState: resp.SQLState, Message: resp.Message}
			}
		default:
			return fmt.Errorf("page stream: response 0x%02x to a getpage request", resp.Tag)
		}
	}
	return firstErr
}
