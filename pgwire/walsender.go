package pgwire

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/zenithdb/zenith/repo/pgdata"
)

// The sending side of physical streaming replication, shared by every
// walsender of the project (the safekeepers', the page server's for read
// replicas): the grammar of START_REPLICATION, the startup options a
// replication session names its WAL by, and the loop that sends WAL,
// keepalives and takes the client's standby status updates. What the WAL
// is and how far it may be sent is the caller's (WALSource).

// ErrWALTruncated ends a walsender's stream when WAL it has already sent
// has been cut off its source's history (an election on the safekeepers;
// on the page server, the bytes of a record whose end never came): the
// client must ask again from a point it knows to be consistent.
var ErrWALTruncated = errors.New("WAL already sent has been truncated")

// DefaultKeepalive is how often an idle walsender sends a keepalive
// unless WALSendOptions says otherwise.
const DefaultKeepalive = time.Second

// maxXLogData bounds the WAL in one XLogData message.
const maxXLogData = 128 << 10

// StartupOptions are the startup parameters of a session with the
// settings of its options parameter ("-c k=v", "-ck=v", "--k=v", as
// PostgreSQL's process_startup_options takes them) added; a setting in
// options wins over a parameter of the same name.
func StartupOptions(params map[string]string) map[string]string {
	vals := map[string]string{}
	for k, v := range params {
		vals[k] = v
	}
	opts := strings.Fields(params["options"])
	for i := 0; i < len(opts); i++ {
		o := opts[i]
		switch {
		case o == "-c" && i+1 < len(opts):
			i++
			o = opts[i]
		case strings.HasPrefix(o, "-c"):
			o = o[2:]
		case strings.HasPrefix(o, "--"):
			o = o[2:]
		default:
			continue
		}
		if k, v, ok := strings.Cut(o, "="); ok {
			vals[k] = v
		}
	}
	return vals
}

// IsReplicationSession says whether a session's startup parameters ask
// for a physical replication connection (replication=true, on, yes or 1:
// what a standby's walreceiver sends), in which the replication commands
// run instead of SQL.
func IsReplicationSession(params map[string]string) bool {
	switch strings.ToLower(params["replication"]) {
	case "true", "on", "yes", "1":
		return true
	}
	return false
}

// StartReplication is a START_REPLICATION command of a physical stream.
type StartReplication struct {
	// Slot is the slot named, "" if none.
	Slot string
	// Start is where the client asks the WAL from.
	Start pgdata.LSN
	// Timeline is the timeline asked for, 0 if the command names none.
	Timeline uint32
}

// ParseStartReplication parses the arguments of START_REPLICATION, "[SLOT
// s] [PHYSICAL] lsn [TIMELINE n]", for a walsender that serves only
// timeline tli: another timeline is refused (22023).
func ParseStartReplication(rest string, tli uint32) (StartReplication, error) {
	var sr StartReplication
	f := strings.Fields(rest)
	if len(f) >= 2 && strings.EqualFold(f[0], "SLOT") {
		sr.Slot, f = f[1], f[2:]
	}
	if len(f) >= 1 && strings.EqualFold(f[0], "PHYSICAL") {
		f = f[1:]
	}
	if len(f) == 3 && strings.EqualFold(f[1], "TIMELINE") {
		if f[2] != strconv.FormatUint(uint64(tli), 10) {
			return sr, Errorf(CodeInvalidParameterValue, "requested timeline %s is not timeline %d", f[2], tli)
		}
		sr.Timeline, f = tli, f[:1]
	}
	if len(f) != 1 {
		return sr, Errorf(CodeSyntaxError, "usage: START_REPLICATION [SLOT name] [PHYSICAL] lsn [TIMELINE %d] (logical replication is not supported)", tli)
	}
	lsn, err := pgdata.ParseLSN(f[0])
	if err != nil {
		return sr, Errorf(CodeInvalidParameterValue, "%v", err)
	}
	sr.Start = lsn
	return sr, nil
}

// WALSource is the WAL a walsender sends.
type WALSource interface {
	// Servable returns the end of the WAL that may be sent to a client
	// that has been sent the WAL below sent, and a channel that is
	// closed when that end, or the WAL, changes. An error (such as one
	// wrapping ErrWALTruncated) ends the stream.
	Servable(sent pgdata.LSN) (end pgdata.LSN, changed <-chan struct{}, err error)
	// ReadWAL reads len(b) bytes of WAL at lsn, below an end Servable
	// returned. It returns false when the WAL changed since then (b may
	// hold anything): the walsender asks Servable again.
	ReadWAL(b []byte, lsn pgdata.LSN) (bool, error)
}

// WALSendOptions are the settings of SendWAL.
type WALSendOptions struct {
	// Keepalive is how often an idle stream sends a keepalive
	// (DefaultKeepalive if 0).
	Keepalive time.Duration
	// Timeout, if not 0, ends a stream whose client has sent nothing for
	// that long (PostgreSQL's wal_sender_timeout); once half of it has
	// passed in silence, keepalives ask the client for a reply.
	Timeout time.Duration
	// OnStatus, if set, is called with each standby status update, from
	// the goroutine that reads the client's messages.
	OnStatus func(*StandbyStatus)
	// OnSent, if set, is called with the WAL bytes of each XLogData sent.
	OnSent func(n int)
}

// ErrClientSilent ends a stream whose client sent nothing for
// WALSendOptions.Timeout.
var ErrClientSilent = errors.New("the replication client sent nothing")

// SendWAL streams src's WAL from start on in cb, a COPY BOTH the caller
// started, until the client ends its side with CopyDone (SendWAL then
// ends ours and returns nil), the session ends, ctx ends, or src fails.
// It sends a keepalive when idle, and at once when a status update asks
// for a reply.
func SendWAL(ctx context.Context, cb *CopyBoth, src WALSource, start pgdata.LSN, opt WALSendOptions) error {
	if opt.Keepalive <= 0 {
		opt.Keepalive = DefaultKeepalive
	}
	// The client's messages: standby status updates until CopyDone.
	var clientErr error
	clientDone := make(chan struct{})
	heard := make(chan struct{}, 1)       // a message came
	replyWanted := make(chan struct{}, 1) // a status update asked for a reply
	go func() {
		defer close(clientDone)
		for {
			b, err := cb.Receive()
			if err != nil {
				clientErr = err
				return
			}
			st, err := ParseStandbyMessage(b)
			if err != nil {
				clientErr = err
				return
			}
			signal(heard)
			if st == nil {
				continue
			}
			if opt.OnStatus != nil {
				opt.OnStatus(st)
			}
			if st.ReplyRequested {
				signal(replyWanted)
			}
		}
	}()
	s := &walSender{cb: cb, src: src, opt: opt, heard: heard, replyWanted: replyWanted, clientDone: clientDone}
	err := s.loop(ctx, start)
	select {
	case <-clientDone:
		if errors.Is(clientErr, ErrCopyDone) {
			return cb.Close()
		}
		return clientErr
	default:
	}
	// The session reads the connection again once we return: the reader
	// above must be gone by then. End our side and wait for the client to
	// end its side or the connection to close (Serve closes it at
	// shutdown). A silent client may be gone without a word: its
	// connection is closed instead.
	_ = cb.Close()
	if errors.Is(err, ErrClientSilent) {
		_ = cb.s.Close()
	}
	<-clientDone
	return err
}

// signal makes a pending signal on c, a channel of capacity 1.
func signal(c chan struct{}) {
	select {
	case c <- struct{}{}:
	default:
	}
}

// walSender is the sending side of one SendWAL.
type walSender struct {
	cb                 *CopyBoth
	src                WALSource
	opt                WALSendOptions
	heard, replyWanted <-chan struct{}
	clientDone         <-chan struct{}
}

// loop sends WAL and keepalives until the client ends the stream
// (clientDone closes: nil), an error, or ctx ends.
func (s *walSender) loop(ctx context.Context, start pgdata.LSN) error {
	keepalive := time.NewTicker(s.opt.Keepalive)
	defer keepalive.Stop()
	// One message, read into in place: the CopyData framing, the
	// XLogData header, the WAL (read straight from the source, sent
	// without a copy).
	const hdr = CopyDataHeader + xlogDataHeader
	msgBuf := make([]byte, hdr+maxXLogData)
	buf := msgBuf[hdr:]
	pos := start
	lastHeard := time.Now()
	for {
		end, changed, err := s.src.Servable(pos)
		if err != nil {
			return err
		}
		for pos < end {
			n := min(pgdata.LSN(len(buf)), end-pos)
			ok, err := s.src.ReadWAL(buf[:n], pos)
			if err != nil {
				return err
			}
			if !ok {
				// The WAL changed after Servable: changed is closed,
				// and the next round checks it.
				break
			}
			msg := XLogData{Start: pos, WALEnd: end, SendTime: ToPGTime(time.Now())}
			msg.putHeader(msgBuf[CopyDataHeader:])
			if err := s.cb.SendFramed(msgBuf[:hdr+int(n)]); err != nil {
				return err
			}
			if s.opt.OnSent != nil {
				s.opt.OnSent(int(n))
			}
			pos += n
		}
		reply := false
		select {
		case <-changed:
			continue
		case <-s.heard:
			lastHeard = time.Now()
			continue
		case <-s.replyWanted:
		case <-keepalive.C:
			silent := time.Since(lastHeard)
			if s.opt.Timeout > 0 && silent > s.opt.Timeout {
				return fmt.Errorf("%w for %v: ending the stream", ErrClientSilent, silent.Round(time.Millisecond))
			}
			reply = s.opt.Timeout > 0 && silent > s.opt.Timeout/2
		case <-s.clientDone:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
		ka := Keepalive{WALEnd: pos, SendTime: ToPGTime(time.Now()), ReplyRequested: reply}
		if err := s.cb.Send(ka.Encode()); err != nil {
			return err
		}
	}
}

// WALCuts counts the cuts of a WAL source's history (see
// ErrWALTruncated) and says where the last one cut it, for Check.
type WALCuts struct {
	Count uint64
	Last  pgdata.LSN
}

// Check returns the count of cuts that a walsender that has sent the WAL
// below sent, having seen seen of them, goes on with; or an error
// wrapping ErrWALTruncated if WAL below sent may have been cut since: the
// last cut is below sent, or several came at once (only the last one's
// position is kept).
func (c WALCuts) Check(sent pgdata.LSN, seen uint64) (uint64, error) {
	switch {
	case c.Count == seen:
		return seen, nil
	case c.Count == seen+1 && c.Last >= sent:
		return c.Count, nil
	case c.Count == seen+1:
		return 0, fmt.Errorf("%w: sent up to %s, truncated at %s", ErrWALTruncated, sent, c.Last)
	default:
		return 0, fmt.Errorf("%w: sent up to %s, %d truncations since, the last at %s", ErrWALTruncated, sent, c.Count-seen, c.Last)
	}
}
