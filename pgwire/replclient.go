package pgwire

import (
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
	"golang.org/x/sys/unix"

	"github.com/zenithdb/zenith/repo/pgdata"
)

// ReplicationConn is a physical replication connection to a walsender: a
// PostgreSQL server (the compute) or a safekeeper.
type ReplicationConn struct {
	conn *pgconn.PgConn
	// Once streaming, the connection is taken from pgconn (Hijack) and
	// read and written here: pgconn ends a connection whose read failed by
	// writing Terminate from a goroutine of its own, which would race with
	// a concurrent SendStatus. From then on one goroutine reads (Receive)
	// and writers hold wmu.
	raw net.Conn
	fe  *pgproto3.Frontend
	wmu sync.Mutex // serialises writers once streaming
}

// ConnectReplication opens a physical replication connection. connStr is
// a libpq connection string or URL; replication=true is added.
func ConnectReplication(ctx context.Context, connStr string) (*ReplicationConn, error) {
	cfg, err := pgconn.ParseConfig(connStr)
	if err != nil {
		return nil, fmt.Errorf("replication connection string: %w", err)
	}
	cfg.RuntimeParams["replication"] = "true"
	c, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect for replication: %w", err)
	}
	return &ReplicationConn{conn: c}, nil
}

// Close ends the connection.
func (r *ReplicationConn) Close(ctx context.Context) error {
	if r.raw == nil {
		return r.conn.Close(ctx)
	}
	r.wmu.Lock()
	defer r.wmu.Unlock()
	r.raw.SetWriteDeadline(time.Now().Add(time.Second))
	r.fe.Send(&pgproto3.CopyDone{})
	r.fe.Send(&pgproto3.Terminate{})
	r.fe.Flush() // best effort: the connection is closed either way
	return r.raw.Close()
}

// SystemInfo is the answer to IDENTIFY_SYSTEM.
type SystemInfo struct {
	SystemID string
	Timeline uint32
	XLogPos  pgdata.LSN
}

// IdentifySystem runs IDENTIFY_SYSTEM.
func (r *ReplicationConn) IdentifySystem(ctx context.Context) (SystemInfo, error) {
	res, err := r.conn.Exec(ctx, "IDENTIFY_SYSTEM").ReadAll()
	if err != nil {
		return SystemInfo{}, fmt.Errorf("IDENTIFY_SYSTEM: %w", err)
	}
	if len(res) != 1 || len(res[0].Rows) != 1 || len(res[0].Rows[0]) < 3 {
		return SystemInfo{}, errors.New("IDENTIFY_SYSTEM: unexpected result shape")
	}
	row := res[0].Rows[0]
	tli, err := strconv.ParseUint(string(row[1]), 10, 32)
	if err != nil {
		return SystemInfo{}, fmt.Errorf("IDENTIFY_SYSTEM: timeline %q: %w", row[1], err)
	}
	pos, err := pgdata.ParseLSN(string(row[2]))
	if err != nil {
		return SystemInfo{}, fmt.Errorf("IDENTIFY_SYSTEM: %w", err)
	}
	return SystemInfo{SystemID: string(row[0]), Timeline: uint32(tli), XLogPos: pos}, nil
}

// CreatePhysicalSlot creates a physical replication slot that reserves WAL
// from now on. An existing slot of that name is not an error.
func (r *ReplicationConn) CreatePhysicalSlot(ctx context.Context, name string) error {
	if !validSlotName(name) {
		return fmt.Errorf("invalid replication slot name %q: use lower-case letters, digits and underscores", name)
	}
	_, err := r.conn.Exec(ctx, "CREATE_REPLICATION_SLOT "+name+" PHYSICAL RESERVE_WAL").ReadAll()
	var pgErr *pgconn.PgError
	if errors.As(err, &pgErr) && pgErr.Code == CodeDuplicateObject {
		return nil
	}
	if err != nil {
		return fmt.Errorf("create replication slot %s: %w", name, err)
	}
	return nil
}

func validSlotName(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_') {
			return false
		}
	}
	return true
}

// StartReplication asks the walsender to stream WAL from start on timeline
// tli, through slot if it is not empty. On success the connection is in
// COPY BOTH mode: one goroutine calls Receive in a loop, and any goroutine
// may call SendStatus meanwhile (a synchronous standby must report a flush
// as soon as its fsync returns, not when the next message arrives).
func (r *ReplicationConn) StartReplication(ctx context.Context, slot string, start pgdata.LSN, tli uint32) error {
	var b strings.Builder
	b.WriteString("START_REPLICATION ")
	if slot != "" {
		if !validSlotName(slot) {
			return fmt.Errorf("invalid replication slot name %q", slot)
		}
		b.WriteString("SLOT " + slot + " ")
	}
	fmt.Fprintf(&b, "PHYSICAL %s TIMELINE %d", start, tli)
	fe := r.conn.Frontend()
	fe.Send(&pgproto3.Query{String: b.String()})
	if err := fe.Flush(); err != nil {
		return fmt.Errorf("START_REPLICATION: %w", err)
	}
	for {
		msg, err := r.receive(ctx)
		if err != nil {
			return fmt.Errorf("START_REPLICATION: %w", err)
		}
		switch m := msg.(type) {
		case *pgproto3.CopyBothResponse:
			hc, err := r.conn.Hijack()
			if err != nil {
				return fmt.Errorf("START_REPLICATION: %w", err)
			}
			r.raw, r.fe = hc.Conn, hc.Frontend
			return nil
		case *pgproto3.ErrorResponse:
			return fmt.Errorf("START_REPLICATION: %w", pgconn.ErrorResponseToPgError(m))
		case *pgproto3.NoticeResponse, *pgproto3.ParameterStatus:
		default:
			return fmt.Errorf("START_REPLICATION: unexpected %T", msg)
		}
	}
}

// receive reads the next backend message, giving up when ctx ends. A
// message cut short by ctx is kept and completed by the next call.
func (r *ReplicationConn) receive(ctx context.Context) (pgproto3.BackendMessage, error) {
	if r.raw == nil {
		msg, err := r.conn.ReceiveMessage(ctx)
		if err != nil && ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return msg, err
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	fired := make(chan struct{})
	stop := context.AfterFunc(ctx, func() {
		r.raw.SetReadDeadline(time.Unix(1, 0))
		close(fired)
	})
	msg, err := r.fe.Receive()
	if !stop() {
		// ctx ended: the deadline may have cut this read short; clear it
		// (once it is surely set) for the next one.
		<-fired
		r.raw.SetReadDeadline(time.Time{})
		var ne net.Error
		if err != nil && errors.As(err, &ne) && ne.Timeout() {
			return nil, ctx.Err()
		}
	}
	if err != nil {
		return nil, fmt.Errorf("receive from walsender: %w", err)
	}
	return msg, nil
}

// ErrStreamEnded is returned by Receive when the walsender ended the COPY
// stream (e.g. at a timeline switch or when the server shuts down).
var ErrStreamEnded = errors.New("walsender ended the replication stream")

// Receive returns the next *XLogData or *Keepalive. XLogData.Data is
// valid until the next call.
func (r *ReplicationConn) Receive(ctx context.Context) (any, error) {
	for {
		msg, err := r.receive(ctx)
		if err != nil {
			return nil, err
		}
		switch m := msg.(type) {
		case *pgproto3.CopyData:
			return ParseReplicationMessage(m.Data)
		case *pgproto3.CopyDone:
			return nil, ErrStreamEnded
		case *pgproto3.CommandComplete:
			// A walsender that shuts down once it has sent everything
			// (WalSndDone) ends the stream with CommandComplete and no
			// CopyDone.
			return nil, ErrStreamEnded
		case *pgproto3.ErrorResponse:
			return nil, pgconn.ErrorResponseToPgError(m)
		case *pgproto3.NoticeResponse, *pgproto3.ParameterStatus:
		default:
			return nil, fmt.Errorf("unexpected %T in replication stream", msg)
		}
	}
}

// Pending reports whether more of the stream has arrived than Receive
// returned: bytes in the connection's read buffer or unread on its
// socket. A standby that fsyncs only when nothing is pending fsyncs once
// for everything that came in a burst. Call it from the goroutine that
// calls Receive; it is false before streaming.
func (r *ReplicationConn) Pending() bool {
	if r.fe == nil {
		return false
	}
	if r.fe.ReadBufferLen() > 0 {
		return true
	}
	sc, ok := r.raw.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	var n int
	if err := rc.Control(func(fd uintptr) {
		n, err = unix.IoctlGetInt(int(fd), unix.SIOCINQ)
	}); err != nil {
		return false
	}
	return err == nil && n > 0
}

// SendStatus sends a standby status update.
func (r *ReplicationConn) SendStatus(ctx context.Context, st StandbyStatus) error {
	if st.ClientTime == 0 {
		st.ClientTime = ToPGTime(time.Now())
	}
	if r.fe == nil {
		return errors.New("send standby status: not streaming")
	}
	r.wmu.Lock()
	defer r.wmu.Unlock()
	r.fe.Send(&pgproto3.CopyData{Data: st.Encode()})
	if err := r.fe.Flush(); err != nil {
		return fmt.Errorf("send standby status: %w", err)
	}
	return nil
}

// ConnectReplicationAs is ConnectReplication with a default
// application_name: the name a primary knows the client by in
// synchronous_standby_names and pg_stat_replication. A connection string
// that sets application_name itself keeps its own.
func ConnectReplicationAs(ctx context.Context, connStr, appName string) (*ReplicationConn, error) {
	cfg, err := pgconn.ParseConfig(connStr)
	if err != nil {
		return nil, fmt.Errorf("replication connection string: %w", err)
	}
	cfg.RuntimeParams["replication"] = "true"
	if cfg.RuntimeParams["application_name"] == "" {
		cfg.RuntimeParams["application_name"] = appName
	}
	c, err := pgconn.ConnectConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("connect for replication: %w", err)
	}
	return &ReplicationConn{conn: c}, nil
}
