package pgwire

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/rs/zerolog"
)

// TextOID is the type OID of text; every column a Session sends is text.
const TextOID = 25

// Session is one client connection after startup.
type Session struct {
	conn net.Conn
	rd   *sessionReader
	be   *pgproto3.Backend
	log  zerolog.Logger

	// Params are the startup parameters (user, database, application_name,
	// options...).
	Params map[string]string
	// Auth is what Config.Authenticate returned for this session.
	Auth any
	// TLS reports whether the session runs over TLS.
	TLS bool

	stmts   map[string]string
	portals map[string]*portal

	// Per-command output state.
	out  sink
	cols bool
	rows int
	tag  string
}

type portal struct {
	cmd  string
	args []string
	// result holds the output of a portal that Describe already ran.
	result *recorder
}

// sink is where a command's messages go: the client, or a recorder when a
// Describe runs the command ahead of Execute.
type sink interface {
	send(pgproto3.BackendMessage)
}

type clientSink struct{ be *pgproto3.Backend }

func (c clientSink) send(m pgproto3.BackendMessage) { c.be.Send(m) }

// recorder keeps a command's row output so that Describe can answer with
// its RowDescription and Execute replay its rows.
type recorder struct {
	desc *pgproto3.RowDescription
	msgs []pgproto3.BackendMessage
	tag  string
	err  error
}

func (r *recorder) send(m pgproto3.BackendMessage) {
	if d, ok := m.(*pgproto3.RowDescription); ok {
		r.desc = d
		return
	}
	r.msgs = append(r.msgs, m)
}

// errCopyInDescribe is returned to a handler that starts a COPY while its
// output is being recorded for Describe.
var errCopyInDescribe = &Error{Code: CodeFeatureNotSupported,
	Message: "this command streams COPY data, which needs the simple query protocol or Execute without Describe"}

// Columns starts a result set with the given column names (all text).
func (s *Session) Columns(names ...string) error {
	if s.cols {
		return errors.New("pgwire: Columns called twice for one command")
	}
	fields := make([]pgproto3.FieldDescription, len(names))
	for i, n := range names {
		fields[i] = pgproto3.FieldDescription{Name: []byte(n), DataTypeOID: TextOID, DataTypeSize: -1, TypeModifier: -1}
	}
	s.cols = true
	s.out.send(&pgproto3.RowDescription{Fields: fields})
	return nil
}

// Row sends one row of the current result set.
func (s *Session) Row(values ...string) error {
	vals := make([][]byte, len(values))
	for i, v := range values {
		vals[i] = []byte(v)
	}
	return s.rowBytes(vals)
}

func (s *Session) rowBytes(vals [][]byte) error {
	if !s.cols {
		return errors.New("pgwire: Row before Columns")
	}
	s.rows++
	s.out.send(&pgproto3.DataRow{Values: vals})
	if s.rows%256 == 0 {
		if _, ok := s.out.(clientSink); ok {
			return s.be.Flush()
		}
	}
	return nil
}

// SetTag sets the command tag of the CommandComplete that ends this command
// (default: "SELECT n" after rows, else the command's first word).
func (s *Session) SetTag(tag string) { s.tag = tag }

// Notice sends a NoticeResponse (e.g. progress) to the client.
func (s *Session) Notice(msg string) error {
	s.be.Send(&pgproto3.NoticeResponse{Severity: "NOTICE", SeverityUnlocalized: "NOTICE", Code: "00000", Message: msg})
	return s.be.Flush()
}

// RemoteAddr is the client's address.
func (s *Session) RemoteAddr() net.Addr { return s.conn.RemoteAddr() }

func (s *Session) fatal(e *Error) error {
	r := errorResponse(e)
	r.Severity, r.SeverityUnlocalized = "FATAL", "FATAL"
	s.be.Send(r)
	_ = s.be.Flush()
	return e
}

// run is the session's message loop.
func (s *Session) run(ctx context.Context, h Handler) error {
	s.stmts = map[string]string{}
	s.portals = map[string]*portal{}
	skipToSync := false
	for {
		msg, err := s.be.Receive()
		if err != nil {
			return err
		}
		if skipToSync {
			if _, ok := msg.(*pgproto3.Sync); !ok {
				if _, ok := msg.(*pgproto3.Terminate); ok {
					return nil
				}
				continue
			}
			skipToSync = false
		}
		var cmdErr error
		switch m := msg.(type) {
		case *pgproto3.Query:
			s.simpleQuery(ctx, h, m.String)
			s.be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		case *pgproto3.Parse:
			s.stmts[m.Name] = m.Query
			s.be.Send(&pgproto3.ParseComplete{})
		case *pgproto3.Bind:
			cmdErr = s.bind(m)
			if cmdErr == nil {
				s.be.Send(&pgproto3.BindComplete{})
			}
		case *pgproto3.Describe:
			cmdErr = s.describe(ctx, h, m)
		case *pgproto3.Execute:
			cmdErr = s.execute(ctx, h, m)
		case *pgproto3.Close:
			if m.ObjectType == 'S' {
				delete(s.stmts, m.Name)
			} else {
				delete(s.portals, m.Name)
			}
			s.be.Send(&pgproto3.CloseComplete{})
		case *pgproto3.Sync:
			// The unnamed portal lives until the end of the transaction.
			delete(s.portals, "")
			s.be.Send(&pgproto3.ReadyForQuery{TxStatus: 'I'})
		case *pgproto3.Flush:
		case *pgproto3.Terminate:
			return nil
		case *pgproto3.CopyData, *pgproto3.CopyDone, *pgproto3.CopyFail:
			// Left over from a COPY that ended with an error; PostgreSQL
			// ignores these too.
		default:
			cmdErr = &Error{Code: CodeProtocolViolation, Message: fmt.Sprintf("unexpected message %T", msg)}
		}
		if cmdErr != nil {
			s.be.Send(errorResponse(cmdErr))
			skipToSync = true
		}
		if err := s.be.Flush(); err != nil {
			return err
		}
	}
}

func (s *Session) simpleQuery(ctx context.Context, h Handler, q string) {
	q = strings.TrimSpace(q)
	q = strings.TrimSpace(strings.TrimSuffix(q, ";"))
	if q == "" {
		s.be.Send(&pgproto3.EmptyQueryResponse{})
		return
	}
	if err := s.command(ctx, h, clientSink{s.be}, q, nil, true); err != nil {
		s.be.Send(errorResponse(err))
	}
}

// command runs one command with its output going to out and, unless
// suppressed, ends it with CommandComplete.
func (s *Session) command(ctx context.Context, h Handler, out sink, cmd string, args []string, complete bool) error {
	s.out, s.cols, s.rows, s.tag = out, false, 0, ""
	if err := h.Handle(ctx, s, cmd, args); err != nil {
		return err
	}
	if complete {
		out.send(&pgproto3.CommandComplete{CommandTag: []byte(s.commandTag(cmd))})
	}
	return nil
}

func (s *Session) commandTag(cmd string) string {
	switch {
	case s.tag != "":
		return s.tag
	case s.cols:
		return "SELECT " + strconv.Itoa(s.rows)
	}
	word, _, _ := strings.Cut(cmd, " ")
	return strings.ToUpper(word)
}

func (s *Session) bind(m *pgproto3.Bind) error {
	q, ok := s.stmts[m.PreparedStatement]
	if !ok {
		return &Error{Code: CodeInvalidStatementName, Message: fmt.Sprintf("prepared statement %q does not exist", m.PreparedStatement)}
	}
	args := make([]string, len(m.Parameters))
	for i, p := range m.Parameters {
		if formatOf(m.ParameterFormatCodes, i) != 0 {
			return &Error{Code: CodeFeatureNotSupported, Message: "binary parameters are not supported; send parameters as text"}
		}
		args[i] = string(p)
	}
	for i := range m.ResultFormatCodes {
		if m.ResultFormatCodes[i] != 0 {
			return &Error{Code: CodeFeatureNotSupported, Message: "binary results are not supported; ask for text"}
		}
	}
	s.portals[m.DestinationPortal] = &portal{cmd: strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(q), ";")), args: args}
	return nil
}

func formatOf(codes []int16, i int) int16 {
	switch len(codes) {
	case 0:
		return 0
	case 1:
		return codes[0]
	}
	if i < len(codes) {
		return codes[i]
	}
	return 0
}

func (s *Session) describe(ctx context.Context, h Handler, m *pgproto3.Describe) error {
	if m.ObjectType == 'S' {
		q, ok := s.stmts[m.Name]
		if !ok {
			return &Error{Code: CodeInvalidStatementName, Message: fmt.Sprintf("prepared statement %q does not exist", m.Name)}
		}
		oids := make([]uint32, countParams(q))
		for i := range oids {
			oids[i] = TextOID
		}
		s.be.Send(&pgproto3.ParameterDescription{ParameterOIDs: oids})
		// The result's shape is known only by running the command, which a
		// statement Describe must not do.
		s.be.Send(&pgproto3.NoData{})
		return nil
	}
	p, ok := s.portals[m.Name]
	if !ok || p == nil {
		return &Error{Code: CodeInvalidCursorName, Message: fmt.Sprintf("portal %q does not exist", m.Name)}
	}
	if p.cmd == "" {
		s.be.Send(&pgproto3.NoData{})
		return nil
	}
	rec := &recorder{}
	rec.err = s.command(ctx, h, rec, p.cmd, p.args, false)
	rec.tag = s.commandTag(p.cmd)
	p.result = rec
	if rec.desc != nil {
		s.be.Send(rec.desc)
	} else {
		s.be.Send(&pgproto3.NoData{})
	}
	return nil
}

func (s *Session) execute(ctx context.Context, h Handler, m *pgproto3.Execute) error {
	p, ok := s.portals[m.Portal]
	if !ok || p == nil {
		return &Error{Code: CodeInvalidCursorName, Message: fmt.Sprintf("portal %q does not exist", m.Portal)}
	}
	if p.cmd == "" {
		s.be.Send(&pgproto3.EmptyQueryResponse{})
		return nil
	}
	if rec := p.result; rec != nil {
		p.result = nil
		if rec.err != nil {
			return rec.err
		}
		for _, msg := range rec.msgs {
			s.be.Send(msg)
		}
		s.be.Send(&pgproto3.CommandComplete{CommandTag: []byte(rec.tag)})
		return nil
	}
	// Without a Describe the client expects no RowDescription.
	return s.command(ctx, h, dropDescription{s.be}, p.cmd, p.args, true)
}

// dropDescription sends everything but the RowDescription, for an Execute
// of a portal that was not described.
type dropDescription struct{ be *pgproto3.Backend }

func (d dropDescription) send(m pgproto3.BackendMessage) {
	if _, ok := m.(*pgproto3.RowDescription); !ok {
		d.be.Send(m)
	}
}

// countParams returns the highest $n placeholder in q.
func countParams(q string) int {
	n := 0
	for i := 0; i < len(q); i++ {
		if q[i] != '$' {
			continue
		}
		j := i + 1
		for j < len(q) && q[j] >= '0' && q[j] <= '9' {
			j++
		}
		if j > i+1 {
			if v, err := strconv.Atoi(q[i+1 : j]); err == nil && v > n && v <= 65535 {
				n = v
			}
		}
	}
	return n
}

// Close ends the session by closing its connection. A handler calls it
// when the client's message stream is broken inside a COPY (a message over
// the size limit, a read error): no later message can be framed, so the
// session cannot go on, and the server must not wait for the rest of a
// message it refused.
func (s *Session) Close() error { return s.conn.Close() }
