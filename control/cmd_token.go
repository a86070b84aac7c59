package control

import (
	"errors"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/zenithdb/zenith/repo/auth"
	"github.com/zenithdb/zenith/repo/id"
)

// TokenCommand is `zenith token`: a token signed with the repository's
// key, for a tenant or for management.
func TokenCommand() *cli.Command {
	return &cli.Command{
		Name:      "token",
		Usage:     "print a token for one tenant (--tenant) or for management (--admin)",
		ArgsUsage: " ",
		Description: `Prints a token signed with the repository's private key (auth_private_key.pem,
made by zenith init --auth). The services take it as the libpq password and
as HTTP "Authorization: Bearer <token>".

A tenant token reaches that tenant's data only: its branches, basebackups,
pages and WAL. An admin token reaches everything, including creating
tenants and pointing timelines at WAL sources: keep it to operators.
/v1/status and /metrics of the page server, and /metrics of the
safekeepers, need no token.

Examples:
  zenith token --tenant 4ccfc1a1bb5d60534261fcf3d7395100 --ttl 1h
  PGPASSWORD=$(zenith token --admin) psql "host=127.0.0.1 port=64000 sslmode=verify-full sslrootcert=.zenith/tls/ca.crt" -c tenant_list
  curl --cacert .zenith/tls/ca.crt -H "Authorization: Bearer $(zenith token --admin)" https://127.0.0.1:9898/v1/tenant`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "tenant", Usage: "a token for tenant `ID` only"},
			&cli.BoolFlag{Name: "admin", Usage: "a token for management: every tenant and every command"},
			&cli.DurationFlag{Name: "ttl", Value: 24 * time.Hour, Usage: "the token expires after `DURATION` (e.g. 30m, 24h)"},
		},
		Action: runToken,
	}
}

func runToken(c *cli.Context) error {
	if c.NArg() > 0 {
		return fmt.Errorf("token takes no arguments (see zenith token --help)")
	}
	if c.Duration("ttl") <= 0 {
		return fmt.Errorf("--ttl %v: want a positive duration, e.g. 1h", c.Duration("ttl"))
	}
	var claims auth.Claims
	switch t := c.String("tenant"); {
	case t != "" && c.Bool("admin"):
		return errors.New("give --tenant or --admin, not both")
	case t != "":
		tid, err := id.ParseTenantID(t)
		if err != nil {
			return fmt.Errorf("--tenant %q: %w (tenant ids are 32 hex characters; zenith tenant list shows them)", t, err)
		}
		claims = auth.TenantClaims(tid)
	case c.Bool("admin"):
		claims = auth.AdminClaims()
	default:
		return errors.New("say whose token: --tenant ID or --admin")
	}
	e, err := openEnv(c)
	if err != nil {
		return err
	}
	tok, err := e.issueToken(claims, c.Duration("ttl"))
	if err != nil {
		return err
	}
	fmt.Fprintln(e.Out, tok)
	return nil
}
