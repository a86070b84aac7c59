package safekeeper

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/zenithdb/zenith/pageserver/api"
	"github.com/zenithdb/zenith/pgwire"
	"github.com/zenithdb/zenith/repo/auth"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// stateColumns are the columns of greet's answer (vote adds granted).
var stateColumns = []string{"term", "history", "flush_lsn", "record_lsn", "commit_lsn", "begin_lsn"}

// commandNeeds is what each command needs of a token when auth is on.
// The election commands (greet, vote, elected, compute) are the control
// plane's, and elected and compute make the safekeeper connect where they
// say: admin. Reading a timeline's WAL needs a token for its tenant (the
// first argument, or the replication session's tenant_id).
var commandNeeds = map[string]auth.Need{
	"greet":                   auth.Admin,
	"vote":                    auth.Admin,
	"elected":                 auth.Admin,
	"compute":                 auth.Admin,
	"read_wal":                auth.Tenant,
	"IDENTIFY_SYSTEM":         auth.Tenant,
	"START_REPLICATION":       auth.Tenant,
	"CREATE_REPLICATION_SLOT": auth.Tenant,
	"SHOW":                    auth.Tenant,
}

// replicationCommands are the commands of a replication session, whose
// timeline is named in the startup parameters.
var replicationCommands = map[string]bool{"IDENTIFY_SYSTEM": true, "START_REPLICATION": true, "CREATE_REPLICATION_SLOT": true, "SHOW": true}

// authorize checks that the session's token (if auth is on) may run the
// command whose first word is word: 28000 if not.
func authorize(sess *pgwire.Session, word string, fields []string) error {
	claims, ok := sess.Auth.(*auth.Claims)
	if !ok {
		return nil
	}
	need, ok := commandNeeds[word]
	if !ok {
		// An unknown command: the handler says so.
		return nil
	}
	var tenant id.TenantID
	if need == auth.Tenant {
		if replicationCommands[word] {
			tenant, _, _ = api.ReplicationTimeline(sess.Params)
		} else if len(fields) > 1 {
			tenant, _ = id.ParseTenantID(fields[1])
		}
	}
	if err := claims.Allow(need, tenant); err != nil {
		return pgwire.Errorf(pgwire.CodeInvalidAuthorization, "%v", err)
	}
	return nil
}

// handle runs one command of a libpq session.
func (s *Safekeeper) handle(ctx context.Context, sess *pgwire.Session, cmd string, args []string) error {
	word, rest, _ := strings.Cut(cmd, " ")
	key := word
	if replicationCommands[strings.ToUpper(word)] {
		key = strings.ToUpper(word)
	}
	if err := authorize(sess, key, strings.Fields(cmd)); err != nil {
		return err
	}
	switch strings.ToUpper(word) {
	case "IDENTIFY_SYSTEM", "START_REPLICATION", "CREATE_REPLICATION_SLOT", "SHOW":
		return s.handleReplication(ctx, sess, strings.ToUpper(word), strings.TrimSpace(rest))
	}
	fields := strings.Fields(cmd)
	switch word {
	case "greet":
		tl, err := s.commandTimeline(fields, 3, true)
		if err != nil {
			return err
		}
		return s.sendState(sess, tl, nil, tl.State())
	case "vote":
		tl, err := s.commandTimeline(fields, 4, true)
		if err != nil {
			return err
		}
		term, err := parseTerm(fields[3])
		if err != nil {
			return err
		}
		granted, st, err := tl.Vote(term)
		if err != nil {
			return err
		}
		return s.sendState(sess, tl, &granted, st)
	case "read_wal":
		tl, err := s.commandTimeline(fields, 5, false)
		if err != nil {
			return err
		}
		start, err1 := pgdata.ParseLSN(fields[3])
		end, err2 := pgdata.ParseLSN(fields[4])
		if err := errors.Join(err1, err2); err != nil || end < start {
			return pgwire.Errorf(pgwire.CodeInvalidParameterValue, "read_wal: want start <= end LSNs: %v", err)
		}
		return s.readWAL(sess, tl, start, end)
	case "elected":
		if len(fields) == 7 {
			fields = append(fields, "") // an empty history
		}
		tl, err := s.commandTimeline(fields, 8, false)
		if err != nil {
			return err
		}
		term, err := parseTerm(fields[3])
		if err != nil {
			return err
		}
		start, err1 := pgdata.ParseLSN(fields[4])
		begin, err2 := pgdata.ParseLSN(fields[5])
		h, err3 := ParseHistory(fields[7])
		if err := errors.Join(err1, err2, err3); err != nil {
			return pgwire.Errorf(pgwire.CodeInvalidParameterValue, "elected: %v", err)
		}
		if err := s.joinElected(ctx, tl, term, start, begin, fields[6], h); err != nil {
			return err
		}
		sess.SetTag("ELECTED")
		return nil
	case "compute":
		if len(fields) < 6 {
			return pgwire.Errorf(pgwire.CodeSyntaxError, "usage: compute <tenant> <timeline> <term> <start_lsn> <connstr>")
		}
		tl, err := s.commandTimeline(fields[:5], 5, false)
		if err != nil {
			return err
		}
		term, err := parseTerm(fields[3])
		if err != nil {
			return err
		}
		start, err := pgdata.ParseLSN(fields[4])
		if err != nil {
			return pgwire.Errorf(pgwire.CodeInvalidParameterValue, "compute: %v", err)
		}
		// The connection string is the rest of the line, spaces and all.
		connStr := cmd
		for i := 0; i < 5; i++ {
			connStr = strings.TrimLeft(connStr, " \t")
			_, connStr, _ = strings.Cut(connStr, " ")
		}
		if err := tl.setCompute(term, start, strings.TrimSpace(connStr)); err != nil {
			if errors.Is(err, ErrTermChanged) || errors.Is(err, ErrComputeSet) {
				return pgwire.Errorf(pgwire.CodeObjectNotInPrereqState, "%v", err)
			}
			return err
		}
		s.startStreaming(tl)
		sess.SetTag("COMPUTE")
		return nil
	}
	return pgwire.Errorf(pgwire.CodeSyntaxError, "unknown command %q: want greet, vote, read_wal, elected, compute or a replication command", word)
}

// commandTimeline checks that fields has n words and returns the timeline
// its second and third name.
func (s *Safekeeper) commandTimeline(fields []string, n int, create bool) (*Timeline, error) {
	if len(fields) != n {
		return nil, pgwire.Errorf(pgwire.CodeSyntaxError, "%s takes %d arguments, got %d", fields[0], n-1, len(fields)-1)
	}
	tenant, err := id.ParseTenantID(fields[1])
	if err != nil {
		return nil, pgwire.Errorf(pgwire.CodeInvalidParameterValue, "%v", err)
	}
	timeline, err := id.ParseTimelineID(fields[2])
	if err != nil {
		return nil, pgwire.Errorf(pgwire.CodeInvalidParameterValue, "%v", err)
	}
	tl, err := s.Timeline(tenant, timeline, create)
	if err != nil {
		return nil, err
	}
	if tl == nil {
		return nil, pgwire.Errorf(pgwire.CodeUndefinedObject, "timeline %s/%s does not exist on this safekeeper", tenant, timeline)
	}
	return tl, nil
}

func parseTerm(s string) (uint64, error) {
	t, err := strconv.ParseUint(s, 10, 64)
	if err != nil || t == 0 {
		return 0, pgwire.Errorf(pgwire.CodeInvalidParameterValue, "invalid term %q: want a positive integer", s)
	}
	return t, nil
}

func (s *Safekeeper) sendState(sess *pgwire.Session, tl *Timeline, granted *bool, st TimelineState) error {
	rec, err := tl.RecordLSN()
	if err != nil {
		return err
	}
	cols := stateColumns
	vals := []string{strconv.FormatUint(st.Term, 10), st.History.String(), st.FlushLSN.String(),
		rec.String(), st.CommitLSN.String(), st.BeginLSN.String()}
	if granted != nil {
		cols = append([]string{"granted"}, cols...)
		vals = append([]string{map[bool]string{true: "t", false: "f"}[*granted]}, vals...)
	}
	if err := sess.Columns(cols...); err != nil {
		return err
	}
	return sess.Row(vals...)
}

// readWAL sends the stored WAL [start, end) in a COPY OUT.
func (s *Safekeeper) readWAL(sess *pgwire.Session, tl *Timeline, start, end pgdata.LSN) error {
	if end > tl.FlushLSN() {
		return pgwire.Errorf(pgwire.CodeObjectNotInPrereqState, "read_wal: %s is beyond the flush LSN %s", end, tl.FlushLSN())
	}
	w, err := sess.CopyOut()
	if err != nil {
		return err
	}
	buf := make([]byte, 128<<10)
	for pos := start; pos < end; {
		n := min(pgdata.LSN(len(buf)), end-pos)
		if err := tl.ReadWAL(buf[:n], pos); err != nil {
			return err
		}
		if _, err := w.Write(buf[:n]); err != nil {
			return err
		}
		pos += n
	}
	return w.Close()
}

// joinElected brings tl into the elected term: truncate what diverges,
// pull the missing WAL from the donor, record the term.
func (s *Safekeeper) joinElected(ctx context.Context, tl *Timeline, term uint64, start, donorBegin pgdata.LSN, donor string, h History) error {
	from, err := tl.prepareElected(term, start, h, donorBegin)
	if err != nil {
		if errors.Is(err, ErrTermChanged) {
			return pgwire.Errorf(pgwire.CodeObjectNotInPrereqState, "%v", err)
		}
		return err
	}
	if from < start {
		if donor == "-" {
			return pgwire.Errorf(pgwire.CodeObjectNotInPrereqState, "elected: the WAL ends at %s, below the start %s, and there is no donor", from, start)
		}
		if err := pullWAL(ctx, tl, term, donor, from, start, s.cfg.Client); err != nil {
			return err
		}
	}
	return tl.finishElected(term, start, h)
}

// pullWAL copies the WAL [from, to) from the donor safekeeper at addr.
func pullWAL(ctx context.Context, tl *Timeline, term uint64, addr string, from, to pgdata.LSN, client auth.ClientOptions) error {
	conn, err := pgconn.Connect(ctx, peerConnString(addr, client))
	if err != nil {
		return fmt.Errorf("connect to donor %s: %w", addr, err)
	}
	defer conn.Close(context.Background())
	w := &recoveryWriter{tl: tl, term: term, pos: from}
	_, err = conn.CopyTo(ctx, w, fmt.Sprintf("read_wal %s %s %s %s", tl.Tenant, tl.Timeline, from, to))
	if err != nil {
		return fmt.Errorf("pull WAL [%s, %s) from %s: %w", from, to, addr, err)
	}
	if w.pos != to {
		return fmt.Errorf("pull WAL [%s, %s) from %s: got WAL up to %s", from, to, addr, w.pos)
	}
	return nil
}

// recoveryWriter writes the donor's WAL into a timeline.
type recoveryWriter struct {
	tl   *Timeline
	term uint64
	pos  pgdata.LSN
}

func (w *recoveryWriter) Write(b []byte) (int, error) {
	if err := w.tl.appendRecovered(w.term, w.pos, b); err != nil {
		return 0, err
	}
	w.pos += pgdata.LSN(len(b))
	return len(b), nil
}

// peerConnString is the libpq connection string for a safekeeper's
// listener at host:port, presenting client's token and checking its
// certificate against client's CA.
func peerConnString(addr string, client auth.ClientOptions) string {
	host, port := addr, "5454"
	if i := strings.LastIndex(addr, ":"); i >= 0 {
		host, port = addr[:i], addr[i+1:]
	}
	host = strings.Trim(host, "[]")
	return fmt.Sprintf("host=%s port=%s user=zenith dbname=safekeeper %s connect_timeout=5", host, port, client.ConnParams())
}
