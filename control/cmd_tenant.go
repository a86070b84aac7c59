package control

import (
	"errors"
	"fmt"

	"github.com/urfave/cli/v2"

	"github.com/zenithdb/zenith/pgwire"
	"github.com/zenithdb/zenith/repo/id"
)

// TenantCommand is `zenith tenant create|list|delete`.
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
					t, err := e.Pageserver().TenantCreate(c.Context, want)
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
				Name:        "list",
				Usage:       "list the page server's tenants",
				Description: "The default tenant is marked with *.\n\nExamples:\n  zenith tenant list\n  zenith tenant list --json",
				Flags:       []cli.Flag{&cli.BoolFlag{Name: "json", Usage: "print JSON"}},
				Action: func(c *cli.Context) error {
					e, err := openEnv(c)
					if err != nil {
						return err
					}
					ts, err := e.Pageserver().TenantList(c.Context)
					if err != nil {
						return err
					}
					if c.Bool("json") {
						type row struct {
							ID      id.TenantID `json:"id"`
							Default bool        `json:"default"`
						}
						rows := make([]row, 0, len(ts))
						for _, t := range ts {
							rows = append(rows, row{t, t == e.Config.DefaultTenant})
						}
						return writeJSON(e.Out, rows)
					}
					for _, t := range ts {
						mark := " "
						if t == e.Config.DefaultTenant {
							mark = "*"
						}
						fmt.Fprintf(e.Out, "%s %s\n", mark, t)
					}
					return nil
				},
			},
			tenantDeleteCommand(),
		},
	}
}
