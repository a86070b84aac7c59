package safekeeper

import (
	"context"
	"fmt"

	"github.com/jackc/pgx/v5/pgconn"

	"github.com/zenithdb/zenith/repo/auth"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// AcknowledgedEnd returns an LSN at or after the end of every commit of
// tenant/timeline a compute has had acknowledged: the end of the last
// complete record of the most advanced of the safekeepers that answer, of
// which there must be a majority. A commit is acknowledged once a majority
// holds it, and every majority shares a safekeeper with the answering one,
// so the most advanced of them holds it (the argument of Elect's donor).
// The WAL after the last acknowledged commit may be there too: a
// compute's next commits make it durable on a majority. It returns 0 if
// the safekeepers hold no WAL of the timeline. Like an election's greeting
// it creates the timeline, empty, on a safekeeper that does not know it;
// it changes nothing else.
func AcknowledgedEnd(ctx context.Context, safekeepers []string, tenant id.TenantID, timeline id.TimelineID, client auth.ClientOptions) (pgdata.LSN, error) {
	e := newElection(safekeepers, tenant, timeline, client)
	conns := make([]*pgconn.PgConn, len(safekeepers))
	defer closeAll(conns)
	greeted, _ := e.greet(ctx, conns, tenant.String()+" "+timeline.String())
	if greeted < len(safekeepers)/2+1 {
		return 0, fmt.Errorf("%d of %d safekeepers answered: %w%s", greeted, len(safekeepers), ErrNoQuorum, e.failures())
	}
	best := mostAdvanced(e.Safekeepers, func(st SafekeeperState) bool { return st.Err == nil })
	return e.Safekeepers[best].RecordLSN, nil
}
