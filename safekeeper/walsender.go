package safekeeper

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/zenithdb/zenith/pageserver/api"
	"github.com/zenithdb/zenith/pgwire"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/walseg"
)

// ErrWALTruncated ends a walsender's stream when an election truncated WAL
// it had already sent: the commit LSN is a byte position, which can lie
// inside a record that the election then drops (it keeps only complete
// records), and the new term's WAL differs from there on. The client must
// ask again from a point it knows to be consistent (the page server does
// so from the end of the last record it ingested).
var ErrWALTruncated = pgwire.ErrWALTruncated

// sessionTimeline finds the timeline a replication session names in its
// startup parameters (api.ReplicationTimeline).
func (s *Safekeeper) sessionTimeline(params map[string]string) (*Timeline, error) {
	tenant, timeline, err := api.ReplicationTimeline(params)
	if err != nil {
		return nil, err
	}
	tl, err := s.Timeline(tenant, timeline, false)
	if err != nil {
		return nil, err
	}
	if tl == nil {
		return nil, pgwire.Errorf(pgwire.CodeUndefinedObject, "timeline %s/%s does not exist on this safekeeper", tenant, timeline)
	}
	return tl, nil
}

// GenerationParam is the startup option by which a page server tells a
// safekeeper the attach generation it holds the tenant at:
// options='-c pageserver_generation=<n>' (a decimal number, 0 or absent
// for a page server without generations). A page server sends it only to
// safekeepers, so a stock PostgreSQL walsender never sees it; the
// safekeeper lets only the newest generation's feedback decide which WAL
// it may remove (see Timeline.SetPageserverLSN).
const GenerationParam = "pageserver_generation"

// sessionGeneration is the attach generation a replication session
// names in its startup parameters (GenerationParam), 0 if none.
func sessionGeneration(params map[string]string) (uint32, error) {
	v := pgwire.StartupOptions(params)[GenerationParam]
	if v == "" {
		return 0, nil
	}
	g, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return 0, pgwire.Errorf(pgwire.CodeInvalidParameterValue, "%s=%q: want a decimal generation number", GenerationParam, v)
	}
	return uint32(g), nil
}

// PageserverUser is the user name the page server's WAL receiver
// connects with. Only such a session's standby status updates are taken
// as the page server's consistent LSN, below which WAL may be removed:
// any other client, such as a read replica's walreceiver (a stock
// PostgreSQL standby), only reads.
const PageserverUser = "pageserver"

// isPageserver says whether a replication session is the page server's.
func isPageserver(params map[string]string) bool { return params["user"] == PageserverUser }

// servable is the end of the WAL a walsender may send: the commit LSN,
// which is never above the flush LSN.
func (st TimelineState) servable() pgdata.LSN { return min(st.CommitLSN, st.FlushLSN) }

// handleReplication runs the replication commands the page server's WAL
// receiver, or a read replica's walreceiver, sends.
func (s *Safekeeper) handleReplication(ctx context.Context, sess *pgwire.Session, word, rest string) error {
	tl, err := s.sessionTimeline(sess.Params)
	if err != nil {
		return err
	}
	st := tl.State()
	switch word {
	case "IDENTIFY_SYSTEM":
		if st.SystemID == 0 && !isPageserver(sess.Params) {
			// A replica waiting for the branch's first primary: it
			// checks the system id against its own and retries.
			return pgwire.Errorf(pgwire.CodeObjectNotInPrereqState, "timeline %s/%s has no WAL on this safekeeper yet: no primary has written to it", tl.Tenant, tl.Timeline)
		}
		if err := sess.Columns("systemid", "timeline", "xlogpos", "dbname"); err != nil {
			return err
		}
		return sess.Row(strconv.FormatUint(st.SystemID, 10), strconv.Itoa(walseg.Timeline), st.servable().String(), "")
	case "SHOW":
		if strings.TrimSpace(rest) != "wal_segment_size" {
			return pgwire.Errorf(pgwire.CodeUndefinedObject, "a safekeeper shows only wal_segment_size")
		}
		if err := sess.Columns("wal_segment_size"); err != nil {
			return err
		}
		return sess.Row(fmt.Sprintf("%dMB", tl.segmentSize()>>20))
	case "CREATE_REPLICATION_SLOT":
		// WAL retention follows the page server's reported flush LSN,
		// whatever the slot: accept any slot so that a receiver written
		// for PostgreSQL works unchanged.
		name, _, _ := strings.Cut(rest, " ")
		if err := sess.Columns("slot_name", "consistent_point", "snapshot_name", "output_plugin"); err != nil {
			return err
		}
		return sess.Row(name, st.servable().String(), "", "")
	}
	sr, err := pgwire.ParseStartReplication(rest, walseg.Timeline)
	if err != nil {
		return err
	}
	start := sr.Start
	if start < st.BeginLSN && start.SegmentNo(tl.segmentSize()) == st.BeginLSN.SegmentNo(tl.segmentSize()) {
		// A stock walreceiver always asks from the start of a segment
		// (RequestXLogStreaming); where this safekeeper's WAL begins
		// inside that segment, it is sent from there, and the standby
		// keeps what its own segment file holds below.
		start = st.BeginLSN
	}
	if start < st.BeginLSN {
		return pgwire.Errorf(pgwire.CodeUndefinedFile, "requested WAL at %s has already been removed (this safekeeper's WAL begins at %s)", start, st.BeginLSN)
	}
	if start > st.FlushLSN {
		return pgwire.Errorf(pgwire.CodeObjectNotInPrereqState, "requested starting point %s is ahead of the WAL flush position of this safekeeper %s", start, st.FlushLSN)
	}
	gen, err := sessionGeneration(sess.Params)
	if err != nil {
		return err
	}
	return s.sendWAL(ctx, sess, tl, gen, start, st.truncations)
}

// sendWAL streams the committed WAL from start on, until the client ends
// the stream, the session ends, or WAL sent is truncated (ErrWALTruncated).
// gen is the client's attach generation, which its flush reports carry;
// seen is the timeline's count of truncations when start was checked.
func (s *Safekeeper) sendWAL(ctx context.Context, sess *pgwire.Session, tl *Timeline, gen uint32, start pgdata.LSN, seen uint64) error {
	cb, err := sess.CopyBoth()
	if err != nil {
		return err
	}
	log := tl.log.With().Str("walsender", sess.RemoteAddr().String()).Logger()
	pageserver := isPageserver(sess.Params)
	opt := pgwire.WALSendOptions{OnSent: func(n int) { s.metrics.walSent.Add(float64(n)) }}
	if pageserver {
		log = log.With().Uint32("generation", gen).Logger()
		log.Info().Stringer("start", start).Msg("page server streaming WAL")
		warned := false
		opt.OnStatus = func(st *pgwire.StandbyStatus) {
			ok, err := tl.SetPageserverLSN(gen, st.Flushed)
			if err != nil {
				log.Error().Err(err).Msg("record the page server's flush LSN")
			}
			if !ok && !warned {
				log.Warn().Stringer("flush_lsn", st.Flushed).Uint32("newest_generation", tl.State().PageserverGeneration).
					Msg("a page server of an older generation reports: its flush LSN removes no WAL")
				warned = true
			}
		}
	} else {
		log.Info().Stringer("start", start).Str("application_name", sess.Params["application_name"]).Msg("replica streaming WAL")
	}
	err = pgwire.SendWAL(ctx, cb, &timelineWAL{tl: tl, seen: seen}, start, opt)
	if errors.Is(err, ErrWALTruncated) {
		log.Info().Err(err).Msg("ending the stream")
	}
	return err
}

// timelineWAL is a timeline's committed WAL as a walsender sends it
// (pgwire.WALSource): up to the commit LSN, and never from a WAL that an
// election cut below what was sent.
type timelineWAL struct {
	tl *Timeline
	// seen is the count of the timeline's truncations the walsender has
	// checked what it sent against.
	seen uint64
}

func (w *timelineWAL) Servable(sent pgdata.LSN) (pgdata.LSN, <-chan struct{}, error) {
	changed := w.tl.Changed()
	st := w.tl.State()
	seen, err := st.checkSent(sent, w.seen)
	if err != nil {
		return 0, nil, err
	}
	w.seen = seen
	return st.servable(), changed, nil
}

func (w *timelineWAL) ReadWAL(b []byte, lsn pgdata.LSN) (bool, error) {
	return w.tl.readSent(b, lsn, w.seen)
}

// checkSent returns the count of truncations a walsender that has sent the
// WAL below sent, having seen seen of them, goes on with; or
// ErrWALTruncated if WAL below sent may have been cut since
// (pgwire.WALCuts.Check).
func (st TimelineState) checkSent(sent pgdata.LSN, seen uint64) (uint64, error) {
	return pgwire.WALCuts{Count: st.truncations, Last: st.lastCut}.Check(sent, seen)
}

// readSent is ReadWAL for a walsender that has seen seen truncations: it
// reads nothing and returns false if another one came since, so that what
// it sends is never read from a WAL the walsender has not checked.
func (tl *Timeline) readSent(b []byte, lsn pgdata.LSN, seen uint64) (bool, error) {
	tl.mu.Lock()
	defer tl.mu.Unlock()
	if tl.truncations != seen {
		return false, nil
	}
	return true, tl.readWALLocked(b, lsn)
}
