package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/zenithdb/zenith/pageserver/api"
	"github.com/zenithdb/zenith/pgwire"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/safekeeper"
)

// branchCatchUpTimeout bounds how long branch creation at an LSN waits for
// the page server to reach that LSN (a compute's last commit may still be
// on its way to it).
const branchCatchUpTimeout = 10 * time.Second

// BranchCommand is `zenith branch [NAME [START]]`, `zenith branch list`
// and `zenith branch delete NAME`.
func BranchCommand() *cli.Command {
	return &cli.Command{
		Name:      "branch",
		Usage:     "show the branch tree, or create a branch",
		ArgsUsage: "[NAME [START]]",
		Description: `Without arguments, prints the tenant's branches as a tree, each child with
the LSN it branched at, its last LSN, its logical size (its databases as of
its last LSN) and its physical size (the layers and WAL only it holds). With NAME, creates the branch NAME starting at START:
  BRANCH             the end of BRANCH now (default: main)
  BRANCH@LSN         that LSN of BRANCH, as pg_current_wal_lsn() prints it
  BRANCH@TIMESTAMP   the last commit on BRANCH at or before that RFC 3339 time
START may name a timeline id instead of a branch. Creating a branch copies
no data; a compute node on it starts with zenith pg start NAME.
zenith branch delete NAME deletes one. ("list" and "delete" are
subcommands, not branch names.)

Examples:
  zenith branch
  zenith branch feature
  zenith branch before-migration main@0/16B9188
  zenith branch yesterday main@2024-05-01T12:00:00Z
  zenith branch list --json`,
		Flags: []cli.Flag{tenantFlag()},
		Subcommands: []*cli.Command{branchDeleteCommand(), {
			Name:  "list",
			Usage: "list the branches",
			Description: `Lists the branches: NAME, TIMELINE, LAST LSN, LOGICAL (the size of its
databases as of its last LSN, as pg_database_size sums them) and PHYSICAL
(the bytes on the page server only it holds: its own layer files and WAL,
what deleting it frees; a new branch holds none, it reads its parent's).

Examples:
  zenith branch list
  zenith branch list --json | jq -r '.[].name'`,
			Flags: []cli.Flag{tenantFlag(), &cli.BoolFlag{Name: "json", Usage: "print JSON"}},
			Action: func(c *cli.Context) error {
				e, t, err := openTenant(c)
				if err != nil {
					return err
				}
				branches, err := e.Pageserver().BranchList(c.Context, t)
				if err != nil {
					return explainTenant(err, t)
				}
				if c.Bool("json") {
					return writeJSON(e.Out, branches)
				}
				return printBranchList(e.Out, branches)
			},
		}},
		Action: func(c *cli.Context) error {
			if c.NArg() > 2 {
				return fmt.Errorf("branch takes at most NAME and START (see zenith branch --help)")
			}
			e, t, err := openTenant(c)
			if err != nil {
				return err
			}
			if c.NArg() == 0 {
				branches, err := e.Pageserver().BranchList(c.Context, t)
				if err != nil {
					return explainTenant(err, t)
				}
				printBranchTree(e.Out, branches)
				return nil
			}
			start := "main"
			if c.NArg() == 2 {
				start = c.Args().Get(1)
			}
			b, err := e.CreateBranch(c.Context, t, c.Args().First(), start)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.Out, "created branch %s at %s from %s (timeline %s)\n", b.Name, b.AncestorLSN, start, b.Timeline)
			return nil
		},
	}
}

// CreateBranch creates branch name of tenant t at start (BRANCH,
// BRANCH@LSN or BRANCH@TIME), checking what can be checked here first so
// mistakes get a clear message.
func (e *Env) CreateBranch(ctx context.Context, t id.TenantID, name, start string) (api.BranchInfo, error) {
	if err := api.CheckBranchName(name); err != nil {
		return api.BranchInfo{}, err
	}
	if name == "list" || name == "delete" {
		return api.BranchInfo{}, fmt.Errorf("%q cannot be a branch name: it is a subcommand of zenith branch", name)
	}
	p, err := api.ParseStartPoint(start)
	if err != nil {
		return api.BranchInfo{}, err
	}
	if p.LSN == 0 && p.Time.IsZero() {
		if err := e.waitAcknowledged(ctx, t, p); err != nil {
			return api.BranchInfo{}, err
		}
	}
	if p.LSN != 0 {
		if err := e.waitForLSN(ctx, t, p); err != nil {
			return api.BranchInfo{}, err
		}
	}
	b, err := e.Pageserver().BranchCreate(ctx, t, name, p)
	var pe *PageserverError
	if errors.As(err, &pe) {
		if pe.Code == pgwire.CodeObjectNotInPrereqState {
			// The branch's end is not known while its ingest is stopped
			// (which may also have happened since waitForLSN looked).
			if err := e.checkIngest(ctx, t, p); err != nil {
				return b, err
			}
		}
		switch pe.Code {
		case pgwire.CodeDuplicateObject:
			return b, fmt.Errorf("branch %s exists already (zenith branch shows the branches): %w", name, err)
		case pgwire.CodeUndefinedObject:
			return b, fmt.Errorf("unknown branch or timeline %q (zenith branch shows the branches): %w", p.Branch, err)
		case pgwire.CodeObjectNotInPrereqState: // before the GC cut-off, or not a record boundary
			return b, fmt.Errorf("cannot branch at %s: the LSN must be the end of a WAL record (as pg_current_wal_lsn() prints it after a commit) and after the GC cut-off: %w", p, err)
		case pgwire.CodeQueryCanceled:
			return b, fmt.Errorf("cannot branch at %s: the page server has not reached that LSN: %w", p, err)
		case pgwire.CodeInvalidParameterValue:
			return b, fmt.Errorf("cannot branch at %s: %w", p, err)
		}
	}
	return b, explainTenant(err, t)
}

// waitAcknowledged waits until the page server has ingested the WAL of
// every commit acknowledged so far on p's branch, so that a branch at its
// latest state holds them. With safekeepers, a commit is acknowledged when
// a majority of them hold it, before the page server may have received
// it; without, the page server itself waits for the WAL it acknowledged
// to be ingested.
func (e *Env) waitAcknowledged(ctx context.Context, t id.TenantID, p api.StartPoint) error {
	if e.Config.Safekeepers.Count == 0 {
		return nil
	}
	b, err := e.startBranch(ctx, t, p)
	if err != nil {
		return err
	}
	client, err := e.cliClient()
	if err != nil {
		return err
	}
	end, err := safekeeper.AcknowledgedEnd(ctx, e.safekeeperAddrs(), t, b.Timeline, client)
	if err != nil {
		return fmt.Errorf("cannot branch at the latest state of %s: ask the safekeepers where its acknowledged WAL ends: %w (are they running? zenith start starts them)", p.Branch, err)
	}
	deadline := time.Now().Add(branchCatchUpTimeout)
	for end > b.LastRecordLSN {
		if err := ingestStoppedBefore(b, p); err != nil {
			return err
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("cannot branch at the latest state of %s: the safekeepers hold its WAL up to %s, the page server has it up to %s after %v: is the page server streaming from them? (zenith status; or branch at %s@%s, which lacks the WAL after it)",
				p.Branch, end, b.LastRecordLSN, branchCatchUpTimeout, p.Branch, b.LastRecordLSN)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(100 * time.Millisecond):
		}
		if b, err = e.startBranch(ctx, t, p); err != nil {
			return err
		}
	}
	return nil
}

// waitForLSN fails with a clear message if p's branch is unknown, or if
// p.LSN is after the end of its branch, waiting a little for the page
// server to catch up first, or after the point where the branch's ingest
// stopped (without waiting: that point does not move until the page
// server is restarted).
func (e *Env) waitForLSN(ctx context.Context, t id.TenantID, p api.StartPoint) error {
	deadline := time.Now().Add(branchCatchUpTimeout)
	for {
		b, err := e.startBranch(ctx, t, p)
		if err != nil {
			return err
		}
		if err := ingestStoppedBefore(b, p); err != nil {
			return err
		}
		if p.LSN < b.GCCutoffLSN {
			return fmt.Errorf("cannot branch at %s: it is before the GC cut-off of branch %s, %s; history before the cut-off is gone (zenith tenant config shows and changes how much history is kept)", p, p.Branch, b.GCCutoffLSN)
		}
		if p.LSN <= b.LastRecordLSN {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("LSN %s is after the end of branch %s (its last record ends at %s): give an LSN at or before that", p.LSN, p.Branch, b.LastRecordLSN)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// checkIngest fails with the reason if p lies after the point where its
// branch's ingest stopped.
func (e *Env) checkIngest(ctx context.Context, t id.TenantID, p api.StartPoint) error {
	b, err := e.startBranch(ctx, t, p)
	if err != nil {
		return err
	}
	return ingestStoppedBefore(b, p)
}

// ingestStoppedBefore returns the error for branching at p from b if b's
// ingest stopped before p, or p is b's end (not known while ingest is
// stopped); nil otherwise.
func ingestStoppedBefore(b api.BranchInfo, p api.StartPoint) error {
	if b.IngestStopped == "" || p.LSN != 0 && p.LSN <= b.LastRecordLSN || p.LSN == 0 && !p.Time.IsZero() {
		return nil
	}
	return fmt.Errorf("cannot branch at %s: %s; branch at %s@%s or before it, or: %s",
		p, b.IngestStopped, p.Branch, b.LastRecordLSN, ingestStopAdvice)
}

// startBranch returns the branch (or timeline) p starts from.
func (e *Env) startBranch(ctx context.Context, t id.TenantID, p api.StartPoint) (api.BranchInfo, error) {
	branches, err := e.Pageserver().BranchList(ctx, t)
	if err != nil {
		return api.BranchInfo{}, explainTenant(err, t)
	}
	for _, b := range branches {
		if b.Name == p.Branch || b.Timeline.String() == p.Branch {
			return b, nil
		}
	}
	names := make([]string, 0, len(branches))
	for _, b := range branches {
		names = append(names, b.Name)
	}
	return api.BranchInfo{}, fmt.Errorf("unknown branch %q in tenant %s (branches: %s)", p.Branch, t, strings.Join(names, ", "))
}

// printBranchTree prints branches as a tree: each branch under its
// ancestor, with the LSN it starts at.
func printBranchTree(w io.Writer, branches []api.BranchInfo) {
	children := map[string][]api.BranchInfo{}
	byTimeline := map[string]bool{}
	for _, b := range branches {
		byTimeline[b.Timeline.String()] = true
	}
	var roots []api.BranchInfo
	for _, b := range branches {
		if b.AncestorTimeline != "" && byTimeline[b.AncestorTimeline] {
			children[b.AncestorTimeline] = append(children[b.AncestorTimeline], b)
		} else {
			roots = append(roots, b)
		}
	}
	byStart := func(bs []api.BranchInfo) {
		sort.Slice(bs, func(i, j int) bool {
			li, lj := bs[i].AncestorLSN, bs[j].AncestorLSN
			if li != lj {
				return li < lj
			}
			return bs[i].Name < bs[j].Name
		})
	}
	byStart(roots)
	var walk func(b api.BranchInfo, prefix, branchPrefix string)
	walk = func(b api.BranchInfo, prefix, branchPrefix string) {
		fmt.Fprintf(w, "%s%s", branchPrefix, b.Name)
		if b.AncestorLSN != 0 {
			fmt.Fprintf(w, " @ %s", b.AncestorLSN)
		}
		fmt.Fprintf(w, " (last %s, logical %s, physical %s)\n", b.LastRecordLSN, logicalSize(b), formatBytes(b.PhysicalSize()))
		kids := children[b.Timeline.String()]
		byStart(kids)
		for i, k := range kids {
			if i == len(kids)-1 {
				walk(k, prefix+"    ", prefix+"└── ")
			} else {
				walk(k, prefix+"│   ", prefix+"├── ")
			}
		}
	}
	for _, r := range roots {
		walk(r, "", "")
	}
}

// printBranchList prints branches as an aligned table with their sizes.
func printBranchList(w io.Writer, branches []api.BranchInfo) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tTIMELINE\tLAST LSN\tLOGICAL\tPHYSICAL")
	for _, b := range branches {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", b.Name, b.Timeline, b.LastRecordLSN, logicalSize(b), formatBytes(b.PhysicalSize()))
	}
	return tw.Flush()
}

// logicalSize prints a branch's logical size, "?" when the page server
// could not compute it.
func logicalSize(b api.BranchInfo) string {
	if b.LogicalSize < 0 {
		return "?"
	}
	return formatBytes(b.LogicalSize)
}
