package control

import (
	"context"
	"fmt"
	"strings"

	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/safekeeper"
)

// safekeeperAddrs are the WAL service addresses of the repository's
// safekeepers.
func (e *Env) safekeeperAddrs() []string {
	addrs := make([]string, e.Config.Safekeepers.Count)
	for i := range addrs {
		addrs[i] = e.SafekeeperAddr(i + 1)
	}
	return addrs
}

// syncStandbyNames is synchronous_standby_names for computes with
// safekeepers: a commit waits for a majority of them (each connects with
// application_name safekeeper<N>).
func syncStandbyNames(count int) string {
	names := make([]string, count)
	for i := range names {
		names[i] = fmt.Sprintf("safekeeper%d", i+1)
	}
	return fmt.Sprintf("ANY %d (%s)", count/2+1, strings.Join(names, ", "))
}

// elect runs the safekeepers' election for the node's timeline (DESIGN.md
// section 6) and points the page server at the safekeepers, so that it has
// the WAL up to the elected start LSN before the basebackup there.
func (e *Env) elect(ctx context.Context, n *Node) (safekeeper.Election, error) {
	client, err := e.cliClient()
	if err != nil {
		return safekeeper.Election{}, err
	}
	el, err := safekeeper.Elect(ctx, e.safekeeperAddrs(), n.Tenant, n.Timeline, client, zerolog.Nop())
	if err != nil {
		return el, fmt.Errorf("compute node %s: safekeeper election: %w (are the safekeepers running? zenith start starts them)", n.Name, err)
	}
	if err := e.Pageserver().Safekeepers(ctx, n.Tenant, n.Timeline, e.safekeeperAddrs()); err != nil {
		return el, fmt.Errorf("compute node %s: point the page server at the safekeepers: %w", n.Name, err)
	}
	return el, nil
}

// assignCompute tells the safekeepers that joined the election to stream
// from the node as the compute of the elected term, starting at start (the
// basebackup's LSN, which must be the term's start); a majority must
// accept. Election.SetCompute does it, with its checks.
func (e *Env) assignCompute(ctx context.Context, n *Node, el safekeeper.Election, start pgdata.LSN) error {
	if err := el.SetCompute(ctx, n.ConnString(e), start); err != nil {
		return fmt.Errorf("compute node %s: %w", n.Name, err)
	}
	return nil
}
