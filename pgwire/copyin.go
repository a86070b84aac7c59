package pgwire

import (
	"errors"
	"fmt"
	"io"

	"github.com/jackc/pgx/v5/pgproto3"
)

// CopyReader reads a COPY IN stream (e.g. a tar of a data directory the
// client uploads) as an io.Reader: the payloads of the client's CopyData
// messages, then io.EOF at its CopyDone. A CopyFail from the client is an
// *Error with SQLSTATE 57014 (query_canceled), as PostgreSQL reports it.
//
// A handler that returns before the end of the stream (an error) leaves
// the rest of the client's COPY messages to the session, which skips
// them as PostgreSQL does.
type CopyReader struct {
	s    *Session
	buf  []byte
	err  error // sticky: io.EOF after CopyDone, or the failure
	read int64
}

// CopyIn starts a COPY IN response in binary format; the handler then
// reads the client's data from the returned reader.
func (s *Session) CopyIn() (*CopyReader, error) {
	if _, ok := s.out.(*recorder); ok {
		return nil, errCopyInDescribe
	}
	s.be.Send(&pgproto3.CopyInResponse{OverallFormat: 1})
	if err := s.be.Flush(); err != nil {
		return nil, fmt.Errorf("start COPY IN: %w", err)
	}
	return &CopyReader{s: s}, nil
}

// Read implements io.Reader.
func (r *CopyReader) Read(p []byte) (int, error) {
	for len(r.buf) == 0 {
		if r.err != nil {
			return 0, r.err
		}
		r.buf, r.err = r.next()
	}
	n := copy(p, r.buf)
	r.buf = r.buf[n:]
	r.read += int64(n)
	return n, nil
}

// BytesRead is how many bytes of COPY data the handler has read so far.
func (r *CopyReader) BytesRead() int64 { return r.read }

// next returns the payload of the client's next CopyData, or the error
// that ends the stream.
func (r *CopyReader) next() ([]byte, error) {
	for {
		msg, err := r.s.be.Receive()
		if err != nil {
			// The stream can no longer be framed (e.g. a message over the
			// size limit): the session ends.
			r.s.Close()
			return nil, fmt.Errorf("read COPY data: %w", err)
		}
		switch m := msg.(type) {
		case *pgproto3.CopyData:
			// The backend reuses its buffer at the next Receive.
			return append([]byte(nil), m.Data...), nil
		case *pgproto3.CopyDone:
			return nil, io.EOF
		case *pgproto3.CopyFail:
			return nil, &Error{Code: CodeQueryCanceled, Message: "COPY failed on the client: " + m.Message}
		case *pgproto3.Flush, *pgproto3.Sync:
			// libpq may send these during COPY IN; PostgreSQL ignores them.
		case *pgproto3.Terminate:
			return nil, errors.New("client terminated the session during COPY")
		default:
			return nil, &Error{Code: CodeProtocolViolation, Message: fmt.Sprintf("unexpected message %T during COPY IN", msg)}
		}
	}
}
