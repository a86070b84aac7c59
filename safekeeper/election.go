package safekeeper

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/repo/auth"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// ErrNoQuorum is returned when fewer than a majority of the safekeepers
// answer or vote.
var ErrNoQuorum = errors.New("no majority of the safekeepers")

// SafekeeperState is what one safekeeper answered in an election.
type SafekeeperState struct {
	// Addr is the safekeeper's libpq address (host:port).
	Addr string
	// Err is why it took no part, nil if it did.
	Err error
	// Voted is set if it voted for the election's term; Joined if it then
	// took the elected history and WAL.
	Voted, Joined bool
	// Its state when it voted (or greeted, if it did not vote).
	Term      uint64
	History   History
	FlushLSN  pgdata.LSN
	RecordLSN pgdata.LSN
	CommitLSN pgdata.LSN
	BeginLSN  pgdata.LSN
}

// Election is the outcome of Elect.
type Election struct {
	Tenant   id.TenantID
	Timeline id.TimelineID
	// Term is the term won.
	Term uint64
	// StartLSN is where the new compute continues: the end of the last
	// complete record of the most advanced voter. 0 means the safekeepers
	// hold no WAL of this timeline: the compute starts from the page
	// server's last record LSN, which SetCompute then passes on.
	StartLSN pgdata.LSN
	// Donor is the voter whose WAL the others were brought to.
	Donor string
	// Safekeepers are the answers, in the order of the addresses given.
	Safekeepers []SafekeeperState
	// Client is what the election presents to the safekeepers (an admin
	// token, the CA of their certificates).
	Client auth.ClientOptions
}

// Elect runs an election for tenant/timeline among the safekeepers at the
// given libpq addresses (host:port): greet them all, propose a term higher
// than any seen, and with a majority of votes bring the voters to the most
// advanced one's WAL (by last term, then flush LSN), truncated to its last
// complete record, recording (term, start) in their histories.
func Elect(ctx context.Context, safekeepers []string, tenant id.TenantID, timeline id.TimelineID, client auth.ClientOptions, log zerolog.Logger) (Election, error) {
	e := newElection(safekeepers, tenant, timeline, client)
	majority := len(safekeepers)/2 + 1
	conns := make([]*pgconn.PgConn, len(safekeepers))
	defer closeAll(conns)
	target := tenant.String() + " " + timeline.String()

	// Greet.
	greeted, maxTerm := e.greet(ctx, conns, target)
	if greeted < majority {
		return e, fmt.Errorf("election: %d of %d safekeepers answered: %w%s", greeted, len(safekeepers), ErrNoQuorum, e.failures())
	}

	// Vote.
	e.Term = maxTerm + 1
	each(len(safekeepers), func(i int) {
		st := &e.Safekeepers[i]
		if st.Err != nil {
			return
		}
		row, err := queryRow(ctx, conns[i], fmt.Sprintf("vote %s %d", target, e.Term))
		if err == nil && len(row) == 0 {
			err = errors.New("vote: no answer row")
		}
		if err == nil {
			err = st.parse(row[1:])
		}
		switch {
		case err != nil:
			st.Err = err
		case row[0] != "t":
			st.Err = fmt.Errorf("vote for term %d refused: the safekeeper is in term %d", e.Term, st.Term)
		default:
			st.Voted = true
		}
	})
	voted := 0
	for _, st := range e.Safekeepers {
		if st.Voted {
			voted++
		}
	}
	donor := mostAdvanced(e.Safekeepers, func(st SafekeeperState) bool { return st.Voted })
	if voted < majority {
		return e, fmt.Errorf("election of term %d: %d of %d safekeepers voted: %w%s", e.Term, voted, len(safekeepers), ErrNoQuorum, e.failures())
	}
	d := e.Safekeepers[donor]
	e.Donor, e.StartLSN = d.Addr, d.RecordLSN
	log.Info().Uint64("term", e.Term).Str("donor", d.Addr).Stringer("start_lsn", e.StartLSN).
		Stringer("donor_history", d.History).Msg("election won")

	// Bring the voters to the donor's WAL.
	each(len(safekeepers), func(i int) {
		st := &e.Safekeepers[i]
		if !st.Voted {
			return
		}
		from := d.Addr
		if i == donor {
			from = "-"
		}
		_, err := queryRow(ctx, conns[i], fmt.Sprintf("elected %s %d %s %s %s %s",
			target, e.Term, e.StartLSN, d.BeginLSN, from, d.History))
		if err != nil {
			st.Err = err
			return
		}
		st.Joined = true
	})
	joined := 0
	for _, st := range e.Safekeepers {
		if st.Joined {
			joined++
		}
	}
	if joined < majority {
		return e, fmt.Errorf("election of term %d: %d of %d safekeepers took the elected WAL: %w%s", e.Term, joined, len(safekeepers), ErrNoQuorum, e.failures())
	}
	return e, nil
}

// SetCompute tells the safekeepers that joined the election to stream
// from the compute at connStr (a libpq connection string the safekeepers
// can reach, in keyword/value or URL form), which started from a
// basebackup at start. A majority must accept.
func (e Election) SetCompute(ctx context.Context, connStr string, start pgdata.LSN) error {
	if start == 0 {
		return errors.New("set the compute: give the LSN of the basebackup it started from")
	}
	if e.StartLSN != 0 && start != e.StartLSN {
		return fmt.Errorf("the compute starts at %s, but term %d starts at %s", start, e.Term, e.StartLSN)
	}
	errs := make([]error, len(e.Safekeepers))
	each(len(e.Safekeepers), func(i int) {
		st := e.Safekeepers[i]
		if !st.Joined {
			errs[i] = errors.New("not in the elected term")
			return
		}
		c, err := pgconn.Connect(ctx, peerConnString(st.Addr, e.Client))
		if err != nil {
			errs[i] = err
			return
		}
		defer c.Close(context.Background())
		_, errs[i] = queryRow(ctx, c, fmt.Sprintf("compute %s %s %d %s %s", e.Tenant, e.Timeline, e.Term, start, connStr))
	})
	ok := 0
	var msgs []string
	for i, err := range errs {
		if err == nil {
			ok++
		} else {
			msgs = append(msgs, e.Safekeepers[i].Addr+": "+err.Error())
		}
	}
	if ok < len(e.Safekeepers)/2+1 {
		return fmt.Errorf("set the compute of term %d: %d safekeepers accepted: %w (%s)", e.Term, ok, ErrNoQuorum, strings.Join(msgs, "; "))
	}
	return nil
}

// Greet asks every safekeeper for its state of tenant/timeline without
// voting, as an election's first round does: for a read replica, which
// starts where the safekeepers' WAL is known, and for status. A
// safekeeper that did not answer has Err set; it fails only when fewer
// than a majority answered.
func Greet(ctx context.Context, safekeepers []string, tenant id.TenantID, timeline id.TimelineID, client auth.ClientOptions) ([]SafekeeperState, error) {
	e := newElection(safekeepers, tenant, timeline, client)
	conns := make([]*pgconn.PgConn, len(safekeepers))
	defer closeAll(conns)
	greeted, _ := e.greet(ctx, conns, tenant.String()+" "+timeline.String())
	if greeted < len(safekeepers)/2+1 {
		return e.Safekeepers, fmt.Errorf("%d of %d safekeepers answered: %w%s", greeted, len(safekeepers), ErrNoQuorum, e.failures())
	}
	return e.Safekeepers, nil
}

// newElection is an election among safekeepers, none greeted yet.
func newElection(safekeepers []string, tenant id.TenantID, timeline id.TimelineID, client auth.ClientOptions) Election {
	e := Election{Tenant: tenant, Timeline: timeline, Safekeepers: make([]SafekeeperState, len(safekeepers)), Client: client}
	for i, a := range safekeepers {
		e.Safekeepers[i].Addr = a
	}
	return e
}

// closeAll closes the connections greet opened.
func closeAll(conns []*pgconn.PgConn) {
	for _, c := range conns {
		if c != nil {
			c.Close(context.Background())
		}
	}
}

// greet connects to every safekeeper of e and asks for its state of
// target ("tenant timeline"), filling e.Safekeepers and conns; it returns
// how many answered and the highest term among them.
func (e *Election) greet(ctx context.Context, conns []*pgconn.PgConn, target string) (greeted int, maxTerm uint64) {
	each(len(e.Safekeepers), func(i int) {
		st := &e.Safekeepers[i]
		c, err := pgconn.Connect(ctx, peerConnString(st.Addr, e.Client))
		if err != nil {
			st.Err = err
			return
		}
		conns[i] = c
		row, err := queryRow(ctx, c, "greet "+target)
		if err == nil {
			err = st.parse(row)
		}
		st.Err = err
	})
	for _, st := range e.Safekeepers {
		if st.Err == nil {
			greeted++
			maxTerm = max(maxTerm, st.Term)
		}
	}
	return greeted, maxTerm
}

// mostAdvanced returns the index of the most advanced of the states ok
// accepts (by the last term of its history, then by flush LSN), -1 if
// it accepts none: of any majority, it holds every record a majority
// had acknowledged.
func mostAdvanced(states []SafekeeperState, ok func(SafekeeperState) bool) int {
	best := -1
	for i, st := range states {
		if !ok(st) {
			continue
		}
		if b := best; b < 0 || st.History.LastTerm() > states[b].History.LastTerm() ||
			st.History.LastTerm() == states[b].History.LastTerm() && st.FlushLSN > states[b].FlushLSN {
			best = i
		}
	}
	return best
}

// failures lists the safekeepers that failed, for an error message.
func (e *Election) failures() string {
	var b strings.Builder
	for _, st := range e.Safekeepers {
		if st.Err != nil {
			fmt.Fprintf(&b, "; %s: %v", st.Addr, st.Err)
		}
	}
	return b.String()
}

// parse reads greet's columns.
func (st *SafekeeperState) parse(row []string) error {
	if len(row) != len(stateColumns) {
		return fmt.Errorf("safekeeper state: %d columns, want %d", len(row), len(stateColumns))
	}
	term, err := strconv.ParseUint(row[0], 10, 64)
	if err != nil {
		return fmt.Errorf("safekeeper term %q: %w", row[0], err)
	}
	h, err := ParseHistory(row[1])
	if err != nil {
		return err
	}
	var lsns [4]pgdata.LSN
	for i := range lsns {
		if lsns[i], err = pgdata.ParseLSN(row[2+i]); err != nil {
			return fmt.Errorf("safekeeper state: %w", err)
		}
	}
	st.Term, st.History = term, h
	st.FlushLSN, st.RecordLSN, st.CommitLSN, st.BeginLSN = lsns[0], lsns[1], lsns[2], lsns[3]
	return nil
}

// queryRow runs a command and returns its first row (nil if none).
func queryRow(ctx context.Context, c *pgconn.PgConn, sql string) ([]string, error) {
	res, err := c.Exec(ctx, sql).ReadAll()
	if err != nil {
		return nil, err
	}
	if len(res) == 0 || len(res[0].Rows) == 0 {
		return nil, nil
	}
	row := make([]string, len(res[0].Rows[0]))
	for i, v := range res[0].Rows[0] {
		row[i] = string(v)
	}
	return row, nil
}

// each runs f(0..n-1) concurrently and waits for them.
func each(n int, f func(i int)) {
	var wg sync.WaitGroup
	for i := 0; i < n; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			f(i)
		}()
	}
	wg.Wait()
}
