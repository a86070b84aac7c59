package pgwire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"

	"github.com/jackc/pgx/v5/pgproto3"
)

// copyChunk is the size of the CopyData messages a CopyWriter sends.
const copyChunk = 64 << 10

// CopyWriter streams a COPY OUT result (e.g. a basebackup tar) to the
// client. Close ends the stream; the handler then returns.
type CopyWriter struct {
	s      *Session
	buf    []byte
	closed bool
}

// CopyOut starts a COPY OUT response in binary format.
func (s *Session) CopyOut() (*CopyWriter, error) {
	if _, ok := s.out.(*recorder); ok {
		return nil, errCopyInDescribe
	}
	s.be.Send(&pgproto3.CopyOutResponse{OverallFormat: 1})
	s.tag = "COPY"
	return &CopyWriter{s: s, buf: make([]byte, 0, copyChunk)}, nil
}

// Write buffers p and sends it in CopyData messages of up to 64 KiB.
func (w *CopyWriter) Write(p []byte) (int, error) {
	if w.closed {
		return 0, errors.New("pgwire: write to a closed COPY stream")
	}
	n := len(p)
	for len(p) > 0 {
		k := copy(w.buf[len(w.buf):cap(w.buf)], p)
		w.buf = w.buf[:len(w.buf)+k]
		p = p[k:]
		if len(w.buf) == cap(w.buf) {
			if err := w.flush(); err != nil {
				return n - len(p), err
			}
		}
	}
	return n, nil
}

func (w *CopyWriter) flush() error {
	if len(w.buf) == 0 {
		return nil
	}
	w.s.be.Send(&pgproto3.CopyData{Data: w.buf})
	err := w.s.be.Flush()
	w.buf = w.buf[:0]
	if err != nil {
		return fmt.Errorf("send COPY data: %w", err)
	}
	return nil
}

// Close sends what is buffered and CopyDone.
func (w *CopyWriter) Close() error {
	if w.closed {
		return nil
	}
	w.closed = true
	if err := w.flush(); err != nil {
		return err
	}
	w.s.be.Send(&pgproto3.CopyDone{})
	return w.s.be.Flush()
}

// CopyBoth is a COPY BOTH stream, as the replication protocol and the
// page stream use: messages flow both ways in CopyData until one side
// sends CopyDone. One goroutine may Receive while another Sends.
//
// What Queue buffered is sent by Flush, or at the latest when the
// session is about to wait for the client's next bytes: a goroutine that
// answers pipelined requests as it Receives them queues each answer and
// the answers to all the requests that came together go out in one
// write, without a second goroutine to tell when none is waiting.
//
// It frames its own CopyData messages into a buffer it keeps between
// flushes, rather than through pgproto3's Backend, whose buffer shrinks
// back to 1 KiB at every flush: a page stream answering 8 KiB pages
// grew it again, copy after copy, for every answer (a fifth of the page
// server's CPU in a profile of pipelined GetPage requests).
type CopyBoth struct {
	s    *Session
	wmu  sync.Mutex
	buf  []byte // framed messages not sent yet
	done bool   // we sent CopyDone
}

// maxRetainedCopyBuffer is the largest buffer a CopyBoth keeps after a
// flush: enough for a batch of pipelined page answers, not so much that
// an idle stream holds a large one.
const maxRetainedCopyBuffer = 1 << 20

// CopyBoth starts a COPY BOTH response.
func (s *Session) CopyBoth() (*CopyBoth, error) {
	if _, ok := s.out.(*recorder); ok {
		return nil, errCopyInDescribe
	}
	s.be.Send(&pgproto3.CopyBothResponse{OverallFormat: 1})
	if err := s.be.Flush(); err != nil {
		return nil, err
	}
	s.tag = "COPY"
	c := &CopyBoth{s: s}
	s.rd.beforeRead = c.flushQueued
	return c, nil
}

// ErrCopyDone is returned by Receive when the client ended its side of the
// stream with CopyDone.
var ErrCopyDone = errors.New("client ended the COPY stream")

// Receive returns the payload of the client's next CopyData. The slice is
// valid until the next Receive.
func (c *CopyBoth) Receive() ([]byte, error) {
	for {
		msg, err := c.s.be.Receive()
		if err != nil {
			// The stream can no longer be framed (a message over the
			// size limit, a read error): the session ends rather than
			// wait for the rest of a message it refused.
			c.s.Close()
			return nil, err
		}
		switch m := msg.(type) {
		case *pgproto3.CopyData:
			return m.Data, nil
		case *pgproto3.CopyDone:
			return nil, ErrCopyDone
		case *pgproto3.CopyFail:
			return nil, &Error{Code: CodeQueryCanceled, Message: "COPY failed on the client: " + m.Message}
		case *pgproto3.Flush, *pgproto3.Sync:
		case *pgproto3.Terminate:
			return nil, errors.New("client terminated the session during COPY")
		default:
			return nil, &Error{Code: CodeProtocolViolation, Message: fmt.Sprintf("unexpected message %T during COPY", msg)}
		}
	}
}

// Send sends one CopyData message and flushes it.
func (c *CopyBoth) Send(payload []byte) error {
	if err := c.Queue(payload); err != nil {
		return err
	}
	return c.Flush()
}

// CopyDataHeader is the size of a CopyData message's framing, its type
// byte and length, which SendFramed writes in front of the payload.
const CopyDataHeader = 5

// SendFramed sends one CopyData message whose payload is
// msg[CopyDataHeader:] and flushes it, with what Queue buffered before
// it in the same write. It writes the framing into msg's first
// CopyDataHeader bytes and sends msg as it is, without copying the
// payload: for a sender that builds its messages in place, such as the
// walsender, which reads WAL straight into the message it sends.
func (c *CopyBoth) SendFramed(msg []byte) error {
	if len(msg) < CopyDataHeader {
		return errors.New("pgwire: SendFramed needs room for the CopyData framing")
	}
	msg[0] = 'd'
	binary.BigEndian.PutUint32(msg[1:], uint32(len(msg)-1))
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.done {
		return errors.New("pgwire: send on a finished COPY stream")
	}
	if len(c.buf) == 0 {
		_, err := c.s.conn.Write(msg)
		return err
	}
	bufs := net.Buffers{c.buf, msg}
	_, err := bufs.WriteTo(c.s.conn)
	c.reset()
	return err
}

// Queue buffers one CopyData message without sending it: a stream that
// answers pipelined requests flushes once it has answered all it holds
// (Flush), one write for many answers. The payload is copied. Past
// flushQueuedBytes buffered, Queue sends them: the client can read the
// first answers of a long batch while the rest are made.
func (c *CopyBoth) Queue(payload []byte) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.done {
		return errors.New("pgwire: send on a finished COPY stream")
	}
	c.buf = appendMessage(c.buf, 'd', payload)
	if len(c.buf) >= flushQueuedBytes {
		return c.flushLocked()
	}
	return nil
}

// flushQueuedBytes is how much Queue buffers before it sends: 32 pages.
const flushQueuedBytes = 256 << 10

// flushQueued sends what Queue buffered, before the session waits for
// the client. If another goroutine holds the stream it is sending, and
// flushes its own messages: waiting for it here could hold up the
// reading of the client's messages behind a write.
func (c *CopyBoth) flushQueued() error {
	if !c.wmu.TryLock() {
		return nil
	}
	defer c.wmu.Unlock()
	return c.flushLocked()
}

// sessionReader is what a session's Backend reads the connection
// through: before each read, which may wait for the client, it runs
// beforeRead (a COPY BOTH stream's flush of its queued messages).
type sessionReader struct {
	r          io.Reader
	beforeRead func() error
}

func (r *sessionReader) Read(p []byte) (int, error) {
	if r.beforeRead != nil {
		if err := r.beforeRead(); err != nil {
			return 0, err
		}
	}
	return r.r.Read(p)
}

// appendMessage appends one protocol message (type byte, length, body)
// to buf, as pgproto3's encoders do.
func appendMessage(buf []byte, typ byte, body []byte) []byte {
	buf = append(buf, typ)
	buf = binary.BigEndian.AppendUint32(buf, uint32(4+len(body)))
	return append(buf, body...)
}

// Flush sends the messages Queue buffered.
func (c *CopyBoth) Flush() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	return c.flushLocked()
}

func (c *CopyBoth) flushLocked() error {
	if len(c.buf) == 0 {
		return nil
	}
	_, err := c.s.conn.Write(c.buf)
	c.reset()
	return err
}

// reset empties the buffer of queued messages once they are sent.
func (c *CopyBoth) reset() {
	if cap(c.buf) > maxRetainedCopyBuffer {
		c.buf = nil
	} else {
		c.buf = c.buf[:0]
	}
}

// Close ends our side of the stream with CopyDone, after what Queue
// buffered.
func (c *CopyBoth) Close() error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.done {
		return nil
	}
	c.done = true
	c.buf = appendMessage(c.buf, 'c', nil)
	return c.flushLocked()
}
