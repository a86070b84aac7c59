package control

import (
	"context"
	"fmt"
	"strings"

	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/repo/id"
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
	el, err := safekeeper.Elect(ctx, e.safekeeperAddrs(), n.Tenant, n.Timeline, zerolog.Nop())
	if err != nil {
		return el, fmt.Errorf("compute node %s: safekeeper election: %w (are the safekeepers running? zenith start starts them)", n.Name, err)
	}
	if err := e.Pageserver().Safekeepers(ctx, n.Tenant, n.Timeline, e.safekeeperAddrs()); err != nil {
		return el, fmt.Errorf("compute node %s: point the page server at the safekeepers: %w", n.Name, err)
	}
	return el, nil
}

// assignCompute tells every safekeeper that voted to stream from the node
// as the compute of the elected term; a majority must accept.
func (e *Env) assignCompute(ctx context.Context, n *Node, el safekeeper.Election, start pgdata.LSN) error {
	ok := 0
	var errs []string
	for _, sk := range el.Safekeepers {
		err := setCompute(ctx, sk.Addr, n.Tenant, n.Timeline, el.Term, start, n.ConnString(e))
		if err != nil {
			errs = append(errs, fmt.Sprintf("%s: %v", sk.Addr, err))
			continue
		}
		ok++
	}
	if ok < len(el.Safekeepers)/2+1 {
		return fmt.Errorf("compute node %s: only %d of %d safekeepers accepted it: %s", n.Name, ok, len(el.Safekeepers), strings.Join(errs, "; "))
	}
	for _, msg := range errs {
		fmt.Fprintf(e.Progress, "compute node %s: a safekeeper did not accept it (the others are a majority): %s\n", n.Name, msg)
	}
	return nil
}

// setCompute sends a safekeeper its `compute` command.
func setCompute(ctx context.Context, addr string, t id.TenantID, tl id.TimelineID, term uint64, start pgdata.LSN, connStr string) error {
	conn, err := dial(ctx, addr, "safekeeper")
	if err != nil {
		return err
	}
	defer conn.Close(context.Background())
	cmd := fmt.Sprintf("compute %s %s %d %s %s", t, tl, term, start, connStr)
	if _, err := conn.Exec(ctx, cmd).ReadAll(); err != nil {
		return fmt.Errorf("%s: %w", cmd, err)
	}
	return nil
}
