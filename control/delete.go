package control

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/zenithdb/zenith/pageserver/api"
	"github.com/zenithdb/zenith/pgwire"
	"github.com/zenithdb/zenith/repo/auth"
	"github.com/zenithdb/zenith/repo/id"
)

// branchDeleteCommand is `zenith branch delete NAME`.
func branchDeleteCommand() *cli.Command {
	return &cli.Command{
		Name:      "delete",
		Usage:     "delete a branch and its storage",
		ArgsUsage: "NAME",
		Description: `Deletes the branch NAME: its timeline's layer files, WAL and metadata on the
page server, and its WAL on the safekeepers. Branches that start from it must be deleted first (children are
never deleted with it). A compute node running on it makes the delete fail
unless --force, which destroys the branch's compute nodes; stopped nodes of
the branch are removed with it. The delete is crash-safe: a page server
killed in the middle finishes it, or has not begun it, when it restarts.

Examples:
  zenith branch delete feature
  zenith branch delete feature --force`,
		Flags: []cli.Flag{tenantFlag(), &cli.BoolFlag{Name: "force", Usage: "destroy the branch's running compute nodes first"}},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return fmt.Errorf("branch delete takes one NAME (see zenith branch delete --help)")
			}
			e, t, err := openTenant(c)
			if err != nil {
				return err
			}
			b, err := e.DeleteBranch(c.Context, t, c.Args().First(), c.Bool("force"))
			if err != nil {
				return err
			}
			fmt.Fprintf(e.Out, "deleted branch %s (timeline %s)\n", b.Name, b.Timeline)
			return nil
		},
	}
}

// DeleteBranch deletes branch name of tenant t. It refuses a branch other
// branches start from, and one with running compute nodes unless force
// (then it destroys them); stopped nodes of the branch go with it.
func (e *Env) DeleteBranch(ctx context.Context, t id.TenantID, name string, force bool) (api.BranchInfo, error) {
	b, err := e.findBranch(ctx, t, name)
	if err != nil {
		return b, err
	}
	branches, err := e.Pageserver().BranchList(ctx, t)
	if err != nil {
		return b, explainTenant(err, t)
	}
	var kids []string
	for _, k := range branches {
		if k.AncestorTimeline == b.Timeline.String() {
			kids = append(kids, k.Name)
		}
	}
	if len(kids) > 0 {
		return b, fmt.Errorf("branch %s has child branches %s: delete them first (zenith branch shows the tree)", name, strings.Join(kids, ", "))
	}
	nodes, err := e.nodesOf(ctx, t, func(n *Node) bool { return n.Timeline == b.Timeline }, force,
		fmt.Sprintf("zenith branch delete %s --force", name))
	if err != nil {
		return b, err
	}
	if err := e.Pageserver().BranchDelete(ctx, t, name); err != nil {
		var pe *PageserverError
		if errors.As(err, &pe) {
			switch pe.Code {
			case pgwire.CodeDependentObjects:
				return b, fmt.Errorf("branch %s has child branches: delete them first: %w", name, err)
			case pgwire.CodeUndefinedObject:
				return b, fmt.Errorf("unknown branch %q (zenith branch shows the branches): %w", name, err)
			}
		}
		return b, explainTenant(err, t)
	}
	if err := e.destroyNodes(ctx, nodes); err != nil {
		return b, err
	}
	return b, e.deleteFromSafekeepers(ctx, t, []id.TimelineID{b.Timeline})
}

// deleteFromSafekeepers removes timelines' WAL from every safekeeper of
// the configuration. A safekeeper that cannot be reached keeps them; the
// message says which, and the page server's delete stands.
func (e *Env) deleteFromSafekeepers(ctx context.Context, t id.TenantID, tls []id.TimelineID) error {
	var paths []string
	for _, tl := range tls {
		paths = append(paths, fmt.Sprintf("/v1/timeline/%s/%s", t, tl))
	}
	failed, err := e.safekeeperRequests(ctx, http.MethodDelete, paths)
	if err != nil {
		return err
	}
	if len(failed) > 0 {
		return fmt.Errorf("deleted on the page server, but some safekeepers still keep the WAL; once they are up, remove it with:\n%s", strings.Join(failed, "\n"))
	}
	return nil
}

// safekeeperRequests sends method on each of paths to every safekeeper's
// HTTP API, with the CLI's token. It returns the requests that failed, as
// curl commands to repeat them with, each with its error.
func (e *Env) safekeeperRequests(ctx context.Context, method string, paths []string) (failed []string, err error) {
	client, scheme, err := e.httpClient(10 * time.Second)
	if err != nil {
		return nil, err
	}
	opts, err := e.cliClient()
	if err != nil {
		return nil, err
	}
	for _, sk := range e.Config.SafekeeperList() {
		for _, path := range paths {
			url := scheme + sk.ListenHTTP + path
			req, err := http.NewRequestWithContext(ctx, method, url, nil)
			if err != nil {
				return nil, err
			}
			auth.SetBearer(req, opts.Token)
			resp, err := client.Do(req)
			if err == nil {
				resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					err = fmt.Errorf("%s", resp.Status)
				}
			}
			if err != nil {
				failed = append(failed, fmt.Sprintf("  curl -X %s %s%s   # %v", method, url, e.curlAuthHint(), err))
			}
		}
	}
	return failed, nil
}

// nodesOf returns tenant t's compute nodes that match. A running one is an
// error (naming how to force it) unless force; with force, running ones
// are destroyed at once. The rest are returned, for the caller to remove
// once what they belong to is gone.
func (e *Env) nodesOf(ctx context.Context, t id.TenantID, match func(*Node) bool, force bool, forceCmd string) ([]*Node, error) {
	all, err := e.nodes(&t)
	if err != nil {
		return nil, err
	}
	var running, stopped []*Node
	for _, n := range all {
		if !match(n) {
			continue
		}
		st, err := n.Status(ctx, e)
		if err != nil {
			return nil, err
		}
		if st == "running" {
			running = append(running, n)
		} else {
			stopped = append(stopped, n)
		}
	}
	if len(running) > 0 && !force {
		names := make([]string, 0, len(running))
		for _, n := range running {
			names = append(names, n.Name)
		}
		return nil, fmt.Errorf("compute nodes %s are running on it: stop them (zenith pg stop NODE --destroy) or use %s", strings.Join(names, ", "), forceCmd)
	}
	if err := e.destroyNodes(ctx, running); err != nil {
		return nil, err
	}
	return stopped, nil
}

// destroyNodes destroys compute nodes whose branch is going away: an
// immediate stop, since their WAL has nowhere to go.
func (e *Env) destroyNodes(ctx context.Context, nodes []*Node) error {
	for _, n := range nodes {
		if err := e.DestroyNode(ctx, n, true); err != nil {
			return err
		}
	}
	return nil
}

// tenantDeleteCommand is `zenith tenant delete ID`.
func tenantDeleteCommand() *cli.Command {
	return &cli.Command{
		Name:      "delete",
		Usage:     "delete a tenant with all its branches and storage",
		ArgsUsage: "ID",
		Description: `Deletes tenant ID from the page server: every branch, layer file and byte of
WAL it holds (and its branches' WAL on the safekeepers). Compute nodes running on it make the delete fail unless
--force, which destroys them; its stopped nodes are removed with it. The
repository's default tenant cannot be deleted.

Examples:
  zenith tenant delete 0123456789abcdef0123456789abcdef
  zenith tenant delete 0123456789abcdef0123456789abcdef --force`,
		Flags: []cli.Flag{&cli.BoolFlag{Name: "force", Usage: "destroy the tenant's running compute nodes first"}},
		Action: func(c *cli.Context) error {
			if c.NArg() != 1 {
				return fmt.Errorf("tenant delete takes one ID (see zenith tenant delete --help)")
			}
			t, err := id.ParseTenantID(c.Args().First())
			if err != nil {
				return fmt.Errorf("%w: want 32 hexadecimal characters (zenith tenant list shows them)", err)
			}
			e, err := openEnv(c)
			if err != nil {
				return err
			}
			if err := e.DeleteTenant(c.Context, t, c.Bool("force")); err != nil {
				return err
			}
			fmt.Fprintf(e.Out, "deleted tenant %s\n", t)
			return nil
		},
	}
}

// DeleteTenant deletes tenant t from the page server, with its compute
// nodes here (running ones only with force).
func (e *Env) DeleteTenant(ctx context.Context, t id.TenantID, force bool) error {
	if t == e.Config.DefaultTenant {
		return fmt.Errorf("tenant %s is the repository's default tenant (default_tenant in %s): it cannot be deleted", t, filepath.Join(e.Dir, ConfigFileName))
	}
	branches, err := e.Pageserver().BranchList(ctx, t)
	var pe *PageserverError
	if errors.As(err, &pe) && pe.Code == pgwire.CodeUndefinedObject {
		return fmt.Errorf("unknown tenant %s (zenith tenant list shows the tenants): %w", t, err)
	}
	if err != nil {
		return err
	}
	nodes, err := e.nodesOf(ctx, t, func(*Node) bool { return true }, force,
		fmt.Sprintf("zenith tenant delete %s --force", t))
	if err != nil {
		return err
	}
	if err := e.Pageserver().TenantDelete(ctx, t); err != nil {
		if errors.As(err, &pe) && pe.Code == pgwire.CodeUndefinedObject {
			return fmt.Errorf("unknown tenant %s (zenith tenant list shows the tenants): %w", t, err)
		}
		return err
	}
	if err := e.setAttached(t, false); err != nil {
		return err
	}
	if err := e.destroyNodes(ctx, nodes); err != nil {
		return err
	}
	if err := os.RemoveAll(e.TenantNodesDir(t)); err != nil {
		return err
	}
	tls := make([]id.TimelineID, 0, len(branches))
	for _, b := range branches {
		tls = append(tls, b.Timeline)
	}
	return e.deleteFromSafekeepers(ctx, t, tls)
}
