package pgwire

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/rs/zerolog"
)

// Handler runs the commands of a session.
type Handler interface {
	// Handle runs one command. args holds the text parameters of an
	// extended-protocol Bind ($1, $2, ...), nil for a simple query. It
	// answers through s (rows, COPY) and returns nil, an *Error for an
	// ErrorResponse with that SQLSTATE, or another error (sent as XX000).
	Handle(ctx context.Context, s *Session, cmd string, args []string) error
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(ctx context.Context, s *Session, cmd string, args []string) error

// Handle calls f.
func (f HandlerFunc) Handle(ctx context.Context, s *Session, cmd string, args []string) error {
	return f(ctx, s, cmd, args)
}

// Config configures a Server.
type Config struct {
	// TLS, when set, is offered to clients that send SSLRequest.
	TLS *tls.Config
	// RequireTLS refuses sessions that did not negotiate TLS.
	RequireTLS bool
	// Authenticate, when set, asks every client for a password (a token)
	// and accepts the session only if it returns nil; what it returns is
	// kept in Session.Auth. When nil, every client is trusted. A password
	// is asked for only over TLS or from a loopback address: anywhere
	// else the session is refused (28000) before the client sends it.
	Authenticate func(ctx context.Context, params map[string]string, password string) (any, error)
	// ServerVersion is reported as the server_version parameter.
	ServerVersion string
	// MaxMessageSize bounds a client message (default 1 MiB).
	MaxMessageSize int
	// StartupTimeout bounds the time from accept to an authenticated
	// session (default 10 s).
	StartupTimeout time.Duration
}

// Server accepts libpq connections and runs each session's commands with
// a Handler.
type Server struct {
	cfg     Config
	handler Handler
	log     zerolog.Logger

	mu    sync.Mutex
	conns map[net.Conn]struct{}
	wg    sync.WaitGroup
}

// NewServer returns a server that runs commands with h.
func NewServer(cfg Config, h Handler, log zerolog.Logger) *Server {
	if cfg.MaxMessageSize == 0 {
		cfg.MaxMessageSize = 1 << 20
	}
	if cfg.StartupTimeout == 0 {
		cfg.StartupTimeout = 10 * time.Second
	}
	if cfg.ServerVersion == "" {
		cfg.ServerVersion = "15.0 (zenith)"
	}
	return &Server{cfg: cfg, handler: h, log: log, conns: map[net.Conn]struct{}{}}
}

// Serve accepts connections on ln until ctx is cancelled or ln fails, then
// closes every session and waits for their handlers to return. It returns
// nil after a cancellation. An accept that fails for want of a file
// descriptor or of memory (EMFILE, ENFILE, ENOBUFS, ENOMEM) or for a
// connection aborted before it was accepted is logged and retried after a
// pause (5 ms, doubling up to a second), as net/http does: a server out
// of descriptors takes connections again once some are closed.
func (s *Server) Serve(parent context.Context, ln net.Listener) error {
	ctx, cancel := context.WithCancel(parent)
	defer cancel()
	go func() {
		<-ctx.Done()
		ln.Close()
		s.mu.Lock()
		for c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
	}()
	var err error
	var pause time.Duration
	for {
		var c net.Conn
		c, err = ln.Accept()
		if err != nil && retryableAccept(err) && ctx.Err() == nil {
			pause = min(max(2*pause, 5*time.Millisecond), time.Second)
			s.log.Warn().Err(err).Dur("retry_in", pause).Msg("accept failed")
			select {
			case <-ctx.Done():
			case <-time.After(pause):
			}
			continue
		}
		if err != nil {
			break
		}
		pause = 0
		s.mu.Lock()
		if ctx.Err() != nil {
			s.mu.Unlock()
			c.Close()
			break
		}
		s.conns[c] = struct{}{}
		s.wg.Add(1)
		s.mu.Unlock()
		go func() {
			defer s.wg.Done()
			s.serveConn(ctx, c)
			s.mu.Lock()
			delete(s.conns, c)
			s.mu.Unlock()
			c.Close()
		}()
	}
	cancel()
	s.wg.Wait()
	if parent.Err() != nil {
		return nil
	}
	return fmt.Errorf("accept: %w", err)
}

// retryableAccept reports whether an accept error is one of the moment
// (see Serve) rather than the listener's end.
func retryableAccept(err error) bool {
	for _, errno := range []syscall.Errno{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED} {
		if errors.Is(err, errno) {
			return true
		}
	}
	return false
}

func (s *Server) serveConn(ctx context.Context, c net.Conn) {
	log := s.log.With().Str("client", c.RemoteAddr().String()).Logger()
	_ = c.SetDeadline(time.Now().Add(s.cfg.StartupTimeout))
	sess, err := s.startup(ctx, c)
	if err != nil {
		if !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
			log.Debug().Err(err).Msg("session startup failed")
		}
		return
	}
	_ = sess.conn.SetDeadline(time.Time{})
	sess.log = log
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	if err := sess.run(ctx, s.handler); err != nil && !errors.Is(err, io.EOF) && !errors.Is(err, net.ErrClosed) {
		log.Debug().Err(err).Msg("session ended")
	}
}

// startup negotiates TLS, reads the startup message and authenticates.
func (s *Server) startup(ctx context.Context, c net.Conn) (*Session, error) {
	conn := c
	rd := &sessionReader{r: conn}
	be := pgproto3.NewBackend(rd, conn)
	be.SetMaxBodyLen(s.cfg.MaxMessageSize)
	tlsDone := false
	for {
		msg, err := be.ReceiveStartupMessage()
		if err != nil {
			return nil, err
		}
		switch m := msg.(type) {
		case *pgproto3.SSLRequest:
			if s.cfg.TLS == nil || tlsDone {
				if _, err := conn.Write([]byte{'N'}); err != nil {
					return nil, err
				}
				continue
			}
			if _, err := conn.Write([]byte{'S'}); err != nil {
				return nil, err
			}
			tc := tls.Server(conn, s.cfg.TLS)
			if err := tc.HandshakeContext(ctx); err != nil {
				return nil, fmt.Errorf("TLS handshake: %w", err)
			}
			conn, tlsDone = tc, true
			rd = &sessionReader{r: conn}
			be = pgproto3.NewBackend(rd, conn)
			be.SetMaxBodyLen(s.cfg.MaxMessageSize)
		case *pgproto3.GSSEncRequest:
			if _, err := conn.Write([]byte{'N'}); err != nil {
				return nil, err
			}
		case *pgproto3.CancelRequest:
			return nil, io.EOF
		case *pgproto3.StartupMessage:
			sess := &Session{conn: conn, rd: rd, be: be, Params: m.Parameters, TLS: tlsDone}
			if s.cfg.RequireTLS && !tlsDone {
				return nil, sess.fatal(&Error{Code: CodeInvalidAuthorization, Message: "this server requires TLS (sslmode=require)"})
			}
			if err := s.authenticate(ctx, sess); err != nil {
				return nil, err
			}
			be.Send(&pgproto3.AuthenticationOk{})
			be.Send(&pgproto3.ParameterStatus{Name: "server_version", Value: s.cfg.ServerVersion})
			be.Send(&pgproto3.ParameterStatus{Name: "server_encoding", Value: "UTF8"})
			be.Send(&pgproto3.ParameterStatus{Name: "client_encoding", Value: "UTF8"})
			be.Send(&pgproto3.ParameterStatus{Name: "DateStyle", Value: "ISO, MDY"})
			be.Send(&pgproto3.ParameterStatus{Name: "integer_datetimes", Value: "on"})
			be.Send(&pgproto3.ParameterStatus{Name: "standard_conforming_strings", Value: "on"})
			be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
			return sess, be.Flush()
		default:
			return nil, fmt.Errorf("unexpected startup message %T", msg)
		}
	}
}

func (s *Server) authenticate(ctx context.Context, sess *Session) error {
	if s.cfg.Authenticate == nil {
		return nil
	}
	if !sess.TLS && !isLoopback(sess.conn.RemoteAddr()) {
		return sess.fatal(&Error{Code: CodeInvalidAuthorization,
			Message: "this server takes a token only over TLS or from loopback",
			Hint:    "connect with sslmode=verify-full (or require)"})
	}
	sess.be.Send(&pgproto3.AuthenticationCleartextPassword{})
	if err := sess.be.Flush(); err != nil {
		return err
	}
	if err := sess.be.SetAuthType(pgproto3.AuthTypeCleartextPassword); err != nil {
		return err
	}
	msg, err := sess.be.Receive()
	if err != nil {
		return err
	}
	pw, ok := msg.(*pgproto3.PasswordMessage)
	if !ok {
		return sess.fatal(&Error{Code: CodeProtocolViolation, Message: fmt.Sprintf("expected a password message, got %T", msg)})
	}
	auth, err := s.cfg.Authenticate(ctx, sess.Params, pw.Password)
	if err != nil {
		var pe *Error
		if !errors.As(err, &pe) {
			pe = &Error{Code: CodeInvalidPassword, Message: "authentication failed: " + err.Error()}
		}
		return sess.fatal(pe)
	}
	sess.Auth = auth
	return nil
}

// isLoopback reports whether addr is a loopback TCP address (or a Unix
// socket, which never leaves the host).
func isLoopback(addr net.Addr) bool {
	switch a := addr.(type) {
	case *net.TCPAddr:
		return a.IP.IsLoopback()
	case *net.UnixAddr:
		return true
	}
	return false
}
