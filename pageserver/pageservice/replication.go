package pageservice

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/zenithdb/zenith/pageserver/api"
	"github.com/zenithdb/zenith/pageserver/walreceiver"
	"github.com/zenithdb/zenith/pgwire"
	"github.com/zenithdb/zenith/repo/auth"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/walseg"
)

// A physical replication session (startup parameter replication=true,
// what a stock standby's walreceiver opens) that names a timeline in its
// startup options (api.ReplicationOptions) is served from the timeline's
// WAL store: the page server is then a read replica's upstream, as the
// safekeepers are when there are some. Its commands are PostgreSQL's:
// IDENTIFY_SYSTEM, TIMELINE_HISTORY (timeline 1 has none), SHOW
// wal_segment_size and START_REPLICATION [SLOT s] [PHYSICAL] lsn
// [TIMELINE 1], which streams the stored WAL up to the end of the last
// complete record the page server has fsynced (never beyond it), and the
// WAL after it as it comes (pgwire.SendWAL). WAL the store has removed is
// an error (58P01) that the standby logs and retries on. Each command
// needs a token for the session's tenant when auth is on.

// replicaSenderTimeout ends a replica's stream once its walreceiver has
// sent nothing for this long (PostgreSQL's wal_sender_timeout default).
const replicaSenderTimeout = 60 * time.Second

// ReplicaWAL is a timeline's stored WAL as the page server's walsender
// serves it to read replicas (walreceiver.WalReceiver's).
type ReplicaWAL interface {
	// SystemID is the timeline's database system identifier.
	SystemID() uint64
	// SegmentSize is the timeline's WAL segment size.
	SegmentSize() uint64
	// SendableLSN is the end of the WAL that may be sent.
	SendableLSN() pgdata.LSN
	// Sender returns the WAL as one stream from start sends it, and
	// where the stream starts (see walreceiver.WalReceiver.Sender).
	Sender(start pgdata.LSN) (pgwire.WALSource, pgdata.LSN, error)
}

// replicationCommands is the hint for a command a replication session
// does not take.
const replicationCommands = "a replication session takes IDENTIFY_SYSTEM, TIMELINE_HISTORY, SHOW wal_segment_size and START_REPLICATION [SLOT name] [PHYSICAL] lsn [TIMELINE 1]"

// replication runs one command of a replication session.
func (ps *Service) replication(ctx context.Context, sess *pgwire.Session, line string) error {
	tenant, timeline, err := api.ReplicationTimeline(sess.Params)
	if err != nil {
		return err
	}
	if err := authorize(sess, auth.Tenant, tenant); err != nil {
		return err
	}
	w, err := ps.tenants.ReplicaWAL(tenant, timeline.String())
	if err != nil {
		return SQLError(err)
	}
	word, rest, _ := strings.Cut(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(line), ";")), " ")
	switch strings.ToUpper(word) {
	case "IDENTIFY_SYSTEM":
		if err := sess.Columns("systemid", "timeline", "xlogpos", "dbname"); err != nil {
			return err
		}
		return sess.Row(strconv.FormatUint(w.SystemID(), 10), strconv.Itoa(walseg.Timeline), w.SendableLSN().String(), "")
	case "TIMELINE_HISTORY":
		return pgwire.Errorf(pgwire.CodeUndefinedFile, "timeline %s has no history file: the page server serves timeline %d, the first, which has none", strings.TrimSpace(rest), walseg.Timeline)
	case "SHOW":
		if !strings.EqualFold(strings.TrimSpace(rest), "wal_segment_size") {
			return pgwire.Errorf(pgwire.CodeUndefinedObject, "a replication session shows only wal_segment_size")
		}
		if err := sess.Columns("wal_segment_size"); err != nil {
			return err
		}
		return sess.Row(fmt.Sprintf("%dMB", w.SegmentSize()>>20))
	case "START_REPLICATION":
		sr, err := pgwire.ParseStartReplication(rest, walseg.Timeline)
		if err != nil {
			return err
		}
		return ps.sendWAL(ctx, sess, w, sr, tenant.String(), timeline.String())
	}
	return &pgwire.Error{Code: pgwire.CodeSyntaxError, Message: fmt.Sprintf("unknown replication command %.64q", word), Hint: replicationCommands}
}

// sendWAL streams the timeline's stored WAL to a replica from sr.Start.
func (ps *Service) sendWAL(ctx context.Context, sess *pgwire.Session, w ReplicaWAL, sr pgwire.StartReplication, tenant, timeline string) error {
	src, start, err := w.Sender(sr.Start)
	var removed *walreceiver.WALRemovedError
	if errors.As(err, &removed) {
		return pgwire.Errorf(pgwire.CodeUndefinedFile, "%v", err)
	}
	if errors.Is(err, walreceiver.ErrNotSending) {
		return pgwire.Errorf(pgwire.CodeObjectNotInPrereqState, "%v", err)
	}
	if err != nil {
		return err
	}
	cb, err := sess.CopyBoth()
	if err != nil {
		return err
	}
	log := ps.log.With().Str("tenant", tenant).Str("timeline", timeline).Str("walsender", sess.RemoteAddr().String()).
		Str("application_name", sess.Params["application_name"]).Logger()
	log.Info().Stringer("start", start).Msg("replica streaming WAL")
	err = pgwire.SendWAL(ctx, cb, src, start, pgwire.WALSendOptions{
		Timeout: replicaSenderTimeout,
		OnStatus: func(st *pgwire.StandbyStatus) {
			log.Debug().Stringer("flushed", st.Flushed).Stringer("applied", st.Applied).Msg("replica status")
		},
	})
	if err != nil && ctx.Err() == nil {
		log.Info().Err(err).Msg("replica stream ended")
	}
	return err
}
