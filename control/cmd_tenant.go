package control

import (
	"errors"
	"fmt"
	"io"
	"text/tabwriter"

	"github.com/urfave/cli/v2"

	"github.com/zenithdb/zenith/pageserver/api"
	"github.com/zenithdb/zenith/pgwire"
	"github.com/zenithdb/zenith/repo/id"
)

// TenantCommand is `zenith tenant create|list|config|attach|detach|delete`.
func TenantCommand() *cli.Command {
	return &cli.Command{
		Name:  "tenant",
		Usage: "manage tenants (independent databases, each with its branches)",
		Subcommands: []*cli.Command{
			{
				Name:      "create",
				Usage:     "create a tenant with its branch main",
				ArgsUsage: "[ID]",
				Description: `Creates a tenant on the page server (with the given id, 32 hex characters, or
a fresh one), runs initdb and imports it as the tenant's branch main. Use it
with --tenant ID on the other commands.

Examples:
  zenith tenant create
  zenith tenant create 0123456789abcdef0123456789abcdef
  zenith pg start main --tenant 0123456789abcdef0123456789abcdef`,
				Action: func(c *cli.Context) error {
					if c.NArg() > 1 {
						return fmt.Errorf("tenant create takes at most one ID (see zenith tenant create --help)")
					}
					e, err := openEnv(c)
					if err != nil {
						return err
					}
					var want id.TenantID
					if c.NArg() == 1 {
						if want, err = id.ParseTenantID(c.Args().First()); err != nil {
							return fmt.Errorf("%w: want 32 hexadecimal characters", err)
						}
					}
					t, err := e.createTenant(c.Context, want)
					var pe *PageserverError
					if errors.As(err, &pe) && pe.Code == pgwire.CodeDuplicateObject {
						return fmt.Errorf("tenant %s exists already: %w", want, err)
					}
					if err != nil {
						return err
					}
					if err := importInitdb(c.Context, e, t, "main"); err != nil {
						return fmt.Errorf("tenant %s was created but its branch main was not: %w", t, err)
					}
					fmt.Fprintf(e.Out, "created tenant %s with branch main\n", t)
					return nil
				},
			},
			{
				Name:  "list",
				Usage: "list the page server's tenants",
				Description: `Lists the tenants, the default one marked with *, each with its branches:
LOGICAL is a branch's databases as of its last LSN (what pg_database_size
sums to), PHYSICAL the bytes on the page server only that branch holds (its
layer files and WAL: what deleting it frees). The tenant's line totals its
physical bytes.

Examples:
  zenith tenant list
  zenith tenant list --json`,
				Flags: []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON"}},
				Action: func(c *cli.Context) error {
					e, err := openEnv(c)
					if err != nil {
						return err
					}
					ts, err := e.Pageserver().TenantList(c.Context)
					if err != nil {
						return err
					}
					rows := make([]tenantRow, 0, len(ts))
					for _, t := range ts {
						branches, err := e.Pageserver().BranchList(c.Context, t)
						if err != nil {
							return fmt.Errorf("branches of tenant %s: %w", t, err)
						}
						rows = append(rows, newTenantRow(t, t == e.Config.DefaultTenant, branches))
					}
					if c.Bool("json") {
						return writeJSON(e.Out, rows)
					}
					return printTenants(e.Out, rows)
				},
			},
			tenantConfigCommand(),
			tenantAttachCommand(),
			tenantDetachCommand(),
			tenantDeleteCommand(),
		},
	}
}

// tenantRow is a tenant in zenith tenant list.
type tenantRow struct {
	ID       id.TenantID `json:"id"`
	Default  bool        `json:"default"`
	Physical int64       `json:"physical_size"`
	Branches []branchRow `json:"branches"`
}

// branchRow is a branch's sizes in zenith tenant list.
type branchRow struct {
	Name       string        `json:"name"`
	Timeline   id.TimelineID `json:"timeline_id"`
	Logical    int64         `json:"logical_size"`
	Physical   int64         `json:"physical_size"`
	LayerBytes int64         `json:"layer_bytes"`
	WALBytes   int64         `json:"wal_bytes"`
}

func newTenantRow(t id.TenantID, def bool, branches []api.BranchInfo) tenantRow {
	r := tenantRow{ID: t, Default: def, Branches: []branchRow{}}
	for _, b := range branches {
		r.Physical += b.PhysicalSize()
		r.Branches = append(r.Branches, branchRow{Name: b.Name, Timeline: b.Timeline, Logical: b.LogicalSize,
			Physical: b.PhysicalSize(), LayerBytes: b.LayerBytes, WALBytes: b.WALBytes})
	}
	return r
}

// printTenants prints each tenant, then its branches with their sizes.
func printTenants(w io.Writer, rows []tenantRow) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "  TENANT\tBRANCH\tLOGICAL\tPHYSICAL")
	for _, r := range rows {
		mark := " "
		if r.Default {
			mark = "*"
		}
		n := fmt.Sprintf("(%d branches)", len(r.Branches))
		if len(r.Branches) == 1 {
			n = "(1 branch)"
		}
		fmt.Fprintf(tw, "%s %s\t%s\t\t%s\n", mark, r.ID, n, formatBytes(r.Physical))
		for _, b := range r.Branches {
			fmt.Fprintf(tw, "\t%s\t%s\t%s\n", b.Name, logicalSize(api.BranchInfo{LogicalSize: b.Logical}), formatBytes(b.Physical))
		}
	}
	return tw.Flush()
}
