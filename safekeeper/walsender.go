package safekeeper

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/zenithdb/zenith/pgwire"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/walseg"
)

// keepaliveInterval is how often an idle walsender sends a keepalive.
const keepaliveInterval = time.Second

// maxXLogData bounds the WAL in one XLogData message.
const maxXLogData = 128 << 10

// ErrWALTruncated ends a walsender's stream when an election truncated WAL
// it had already sent: the commit LSN is a byte position, which can lie
// inside a record that the election then drops (it keeps only complete
// records), and the new term's WAL differs from there on. The client must
// ask again from a point it knows to be consistent (the page server does
// so from the end of the last record it ingested).
var ErrWALTruncated = errors.New("WAL already sent has been truncated by an election")

// sessionTimeline finds the timeline a replication session names in its
// startup parameters: options='-c tenant_id=<id> -c timeline_id=<id>' (or
// --tenant_id=<id>), or tenant_id and timeline_id parameters themselves.
func (s *Safekeeper) sessionTimeline(params map[string]string) (*Timeline, error) {
	tenant, timeline, err := sessionTimelineIDs(params)
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

// sessionOptions are the startup parameters of a session with the
// settings of its options ("-c k=v", "-ck=v", "--k=v") added; a setting in
// options wins over a parameter of the same name.
func sessionOptions(params map[string]string) map[string]string {
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

// sessionGeneration is the attach generation a replication session
// names in its startup parameters (GenerationParam), 0 if none.
func sessionGeneration(params map[string]string) (uint32, error) {
	v := sessionOptions(params)[GenerationParam]
	if v == "" {
		return 0, nil
	}
	g, err := strconv.ParseUint(v, 10, 32)
	if err != nil {
		return 0, pgwire.Errorf(pgwire.CodeInvalidParameterValue, "%s=%q: want a decimal generation number", GenerationParam, v)
	}
	return uint32(g), nil
}

// sessionTimelineIDs are the tenant and timeline ids a replication
// session names in its startup parameters.
func sessionTimelineIDs(params map[string]string) (id.TenantID, id.TimelineID, error) {
	vals := sessionOptions(params)
	if vals["tenant_id"] == "" || vals["timeline_id"] == "" {
		return id.TenantID{}, id.TimelineID{}, pgwire.Errorf(pgwire.CodeInvalidParameterValue,
			"a replication connection to a safekeeper must name its timeline: options='-c tenant_id=<id> -c timeline_id=<id>'")
	}
	tenant, err := id.ParseTenantID(vals["tenant_id"])
	if err != nil {
		return id.TenantID{}, id.TimelineID{}, pgwire.Errorf(pgwire.CodeInvalidParameterValue, "%v", err)
	}
	timeline, err := id.ParseTimelineID(vals["timeline_id"])
	if err != nil {
		return id.TenantID{}, id.TimelineID{}, pgwire.Errorf(pgwire.CodeInvalidParameterValue, "%v", err)
	}
	return tenant, timeline, nil
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
	start, err := parseStartReplication(rest)
	if err != nil {
		return err
	}
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

// parseStartReplication parses "[SLOT s] [PHYSICAL] lsn [TIMELINE n]".
func parseStartReplication(rest string) (pgdata.LSN, error) {
	f := strings.Fields(rest)
	if len(f) >= 2 && strings.EqualFold(f[0], "SLOT") {
		f = f[2:]
	}
	if len(f) >= 1 && strings.EqualFold(f[0], "PHYSICAL") {
		f = f[1:]
	}
	if len(f) == 3 && strings.EqualFold(f[1], "TIMELINE") {
		if f[2] != strconv.Itoa(walseg.Timeline) {
			return 0, pgwire.Errorf(pgwire.CodeInvalidParameterValue, "requested timeline %s is not timeline %d", f[2], walseg.Timeline)
		}
		f = f[:1]
	}
	if len(f) != 1 {
		return 0, pgwire.Errorf(pgwire.CodeSyntaxError, "usage: START_REPLICATION [SLOT name] [PHYSICAL] lsn [TIMELINE 1] (logical replication is not supported)")
	}
	lsn, err := pgdata.ParseLSN(f[0])
	if err != nil {
		return 0, pgwire.Errorf(pgwire.CodeInvalidParameterValue, "%v", err)
	}
	return lsn, nil
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
	if pageserver {
		log = log.With().Uint32("generation", gen).Logger()
		log.Info().Stringer("start", start).Msg("page server streaming WAL")
	} else {
		log.Info().Stringer("start", start).Str("application_name", sess.Params["application_name"]).Msg("replica streaming WAL")
	}
	// The client's messages: standby status updates until CopyDone.
	var clientErr error
	clientDone := make(chan struct{})
	go func() {
		defer close(clientDone)
		warned := false
		for {
			b, err := cb.Receive()
			if err != nil {
				clientErr = err
				return
			}
			st, err := pgwire.ParseStandbyMessage(b)
			if err != nil {
				clientErr = err
				return
			}
			if st == nil || !pageserver {
				continue
			}
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
	}()
	keepalive := time.NewTicker(keepaliveInterval)
	defer keepalive.Stop()
	err = s.sendLoop(ctx, cb, tl, start, seen, clientDone, keepalive.C)
	if errors.Is(err, ErrWALTruncated) {
		log.Info().Err(err).Msg("ending the stream")
	}
	select {
	case <-clientDone:
		if errors.Is(clientErr, pgwire.ErrCopyDone) {
			return cb.Close()
		}
		return clientErr
	default:
	}
	// The session reads the connection again once we return: the reader
	// above must be gone by then. End our side and wait for the client to
	// end its side or the connection to close (Serve closes it at
	// shutdown).
	_ = cb.Close()
	<-clientDone
	return err
}

// sendLoop sends WAL and keepalives until the client ends the stream
// (clientDone closes), an error, or ctx ends. It ends with ErrWALTruncated
// as soon as WAL it sent has been truncated, without sending more.
func (s *Safekeeper) sendLoop(ctx context.Context, cb *pgwire.CopyBoth, tl *Timeline, start pgdata.LSN, seen uint64, clientDone <-chan struct{}, keepalive <-chan time.Time) error {
	buf := make([]byte, maxXLogData)
	pos := start
	for {
		changed := tl.Changed()
		st := tl.State()
		var err error
		if seen, err = st.checkSent(pos, seen); err != nil {
			return err
		}
		for end := st.servable(); pos < end; {
			n := min(pgdata.LSN(len(buf)), end-pos)
			ok, err := tl.readSent(buf[:n], pos, seen)
			if err != nil {
				return err
			}
			if !ok {
				// A truncation came after st: changed is closed, and the
				// next round checks it.
				break
			}
			msg := pgwire.XLogData{Start: pos, WALEnd: end, SendTime: pgwire.ToPGTime(time.Now()), Data: buf[:n]}
			if err := cb.Send(msg.Encode()); err != nil {
				return err
			}
			s.metrics.walSent.Add(float64(n))
			pos += n
		}
		select {
		case <-changed:
		case <-keepalive:
			ka := pgwire.Keepalive{WALEnd: pos, SendTime: pgwire.ToPGTime(time.Now())}
			if err := cb.Send(ka.Encode()); err != nil {
				return err
			}
		case <-clientDone:
			return nil
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// checkSent returns the count of truncations a walsender that has sent the
// WAL below sent, having seen seen of them, goes on with; or
// ErrWALTruncated if WAL below sent may have been cut since: the last cut
// is below sent, or several came at once (only the last one's position is
// kept).
func (st TimelineState) checkSent(sent pgdata.LSN, seen uint64) (uint64, error) {
	switch {
	case st.truncations == seen:
		return seen, nil
	case st.truncations == seen+1 && st.lastCut >= sent:
		return st.truncations, nil
	case st.truncations == seen+1:
		return 0, fmt.Errorf("%w: sent up to %s, truncated at %s", ErrWALTruncated, sent, st.lastCut)
	default:
		return 0, fmt.Errorf("%w: sent up to %s, %d truncations since, the last at %s", ErrWALTruncated, sent, st.truncations-seen, st.lastCut)
	}
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
