package pageserver

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"

	"github.com/zenithdb/zenith/pageserver/api"
	"github.com/zenithdb/zenith/pgwire"
	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/auth"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// pageCommand is one parsed page-service command line. Parsing checks the
// syntax of every argument (ids, LSNs, times, names); whether the tenant
// or branch exists is the command's business.
type pageCommand struct {
	// name is the command word, lower case.
	name string
	// tenant is the tenant argument; tenant_create without one leaves it
	// zero.
	tenant id.TenantID
	// timeline is a reference to a timeline: a branch name or a timeline id.
	timeline string
	// branch is the name of a branch to create (import, branch_create).
	branch string
	// start is branch_create's starting point.
	start api.StartPoint
	// lsn is basebackup's LSN; 0 means the last record.
	lsn pgdata.LSN
	// lazy is basebackup's "lazy": relation files left out, listed with
	// their sizes in api.LazyManifestName.
	lazy bool
	// connStr is callmemaybe's connection string.
	connStr string
	// safekeepers are the safekeepers command's addresses, host:port.
	safekeepers []string
	// retention is tenant_config's change.
	retention api.RetentionChange
	// generation is tenant_attach's (and tenant_create's) generation of
	// the tenant's attachment; 0 for none.
	generation repo.Generation
}

// commandSyntax is each command's arguments, as the usage in errors shows
// them; min and max count them (max -1: the last one takes the rest of
// the line); and what the command needs of a token when auth is on (the
// tenant of a Tenant command is its first argument). Management (tenants,
// WAL sources) needs an admin token; a tenant's data, a token for it.
var commandSyntax = map[string]struct {
	usage    string
	min, max int
	need     auth.Need
}{
	"identify_system": {"identify_system", 0, 0, auth.AnyToken},
	"status":          {"status", 0, 0, auth.AnyToken},
	"tenant_create":   {"tenant_create [tenant_id [generation]]", 0, 2, auth.Admin},
	"tenant_attach":   {"tenant_attach <tenant_id> <generation>", 2, 2, auth.Admin},
	"tenant_detach":   {"tenant_detach <tenant_id>", 1, 1, auth.Admin},
	"tenant_list":     {"tenant_list", 0, 0, auth.Admin},
	"tenant_delete":   {"tenant_delete <tenant_id>", 1, 1, auth.Admin},
	"gc":              {"gc <tenant_id>", 1, 1, auth.Admin},
	"tenant_config":   {"tenant_config <tenant_id> [gc_horizon=<bytes>] [pitr_interval=<duration>]", 1, 3, auth.Admin},
	"import":          {"import <tenant_id> <branch>  (then COPY IN of a tar of a stopped data directory)", 2, 2, auth.Tenant},
	"branch_create":   {"branch_create <tenant_id> <name> <branch|timeline_id>[@<lsn>|@<RFC 3339 time>]", 3, 3, auth.Tenant},
	"branch_list":     {"branch_list <tenant_id>", 1, 1, auth.Tenant},
	"branch_delete":   {"branch_delete <tenant_id> <branch|timeline_id>", 2, 2, auth.Tenant},
	"basebackup":      {"basebackup <tenant_id> <branch|timeline_id> [lsn] [lazy]", 2, 4, auth.Tenant},
	"callmemaybe":     {"callmemaybe <tenant_id> <branch|timeline_id> <connection string>", 3, -1, auth.Admin},
	"safekeepers":     {"safekeepers <tenant_id> <branch|timeline_id> <host:port>[,<host:port>...]", 3, 3, auth.Admin},
	"pagestream":      {"pagestream <tenant_id> <branch|timeline_id>", 2, 2, auth.Tenant},
}

// parseCommand parses a command line. args are the extended protocol's
// parameters: a word "$n" stands for args[n-1]. Errors are *pgwire.Error:
// 42601 for an unknown command or a wrong number of arguments, 22023 for
// a malformed argument.
func parseCommand(line string, args []string) (pageCommand, error) {
	words := strings.Fields(line)
	if len(words) == 0 {
		return pageCommand{}, pgwire.Errorf(pgwire.CodeSyntaxError, "empty command")
	}
	c := pageCommand{name: strings.ToLower(words[0])}
	syn, ok := commandSyntax[c.name]
	if !ok {
		return c, &pgwire.Error{Code: pgwire.CodeSyntaxError, Message: fmt.Sprintf("unknown command %q", truncate(words[0], 64)),
			Hint: "commands: identify_system, status, tenant_create, tenant_attach, tenant_detach, tenant_list, tenant_delete, tenant_config, gc, import, branch_create, branch_list, branch_delete, basebackup, callmemaybe, safekeepers, pagestream"}
	}
	words = words[1:]
	if syn.max == -1 && len(words) >= syn.min {
		// The last argument is the rest of the line, spaces and all.
		// Words end where strings.Fields ends them: at any Unicode space.
		rest := line
		for range syn.min {
			rest = strings.TrimLeftFunc(rest, unicode.IsSpace)
			rest = rest[strings.IndexFunc(rest, unicode.IsSpace):]
		}
		words = append(words[:syn.min-1], strings.TrimSpace(rest))
	}
	if len(words) < syn.min || (syn.max >= 0 && len(words) > syn.max) {
		return c, &pgwire.Error{Code: pgwire.CodeSyntaxError,
			Message: fmt.Sprintf("%s takes %s arguments, got %d", c.name, argCount(syn.min, syn.max), len(words)),
			Hint:    "usage: " + syn.usage}
	}
	for i, w := range words {
		v, err := substitute(w, args)
		if err != nil {
			return c, err
		}
		words[i] = v
	}
	if err := c.parseArgs(words); err != nil {
		return c, &pgwire.Error{Code: pgwire.CodeInvalidParameterValue, Message: err.Error(), Hint: "usage: " + syn.usage}
	}
	return c, nil
}

func argCount(min, max int) string {
	switch {
	case max == -1:
		return fmt.Sprintf("at least %d", min)
	case min == max:
		return strconv.Itoa(min)
	}
	return fmt.Sprintf("%d to %d", min, max)
}

// substitute replaces a "$n" word by the extended protocol's parameter n.
func substitute(w string, args []string) (string, error) {
	if len(w) < 2 || w[0] != '$' {
		return w, nil
	}
	n, err := strconv.Atoi(w[1:])
	if err != nil {
		return w, nil
	}
	if n < 1 || n > len(args) {
		return "", pgwire.Errorf("42P02", "there is no parameter $%d", n)
	}
	return args[n-1], nil
}

// parseArgs checks and stores the arguments of c's command.
func (c *pageCommand) parseArgs(words []string) error {
	var err error
	// Every command that takes arguments takes the tenant first.
	if len(words) > 0 {
		if c.tenant, err = id.ParseTenantID(words[0]); err != nil {
			return err
		}
	}
	switch c.name {
	case "tenant_create", "tenant_attach":
		if len(words) > 1 {
			if c.generation, err = repo.ParseGeneration(words[1]); err != nil {
				return err
			}
			if c.generation == 0 {
				return repo.ErrInvalidGeneration
			}
		}
	case "tenant_config":
		for _, w := range words[1:] {
			if err := c.retention.ParseArg(w); err != nil {
				return err
			}
		}
	case "import":
		c.branch = words[1]
		return api.CheckBranchName(c.branch)
	case "branch_create":
		c.branch = words[1]
		if err := api.CheckBranchName(c.branch); err != nil {
			return err
		}
		c.start, err = api.ParseStartPoint(words[2])
		return err
	case "basebackup", "callmemaybe", "safekeepers", "pagestream", "branch_delete":
		c.timeline = words[1]
		if err := api.CheckTimelineRef(c.timeline); err != nil {
			return err
		}
		if c.name == "safekeepers" {
			c.safekeepers, err = parseSafekeeperAddrs(words[2])
			return err
		}
		if c.name == "callmemaybe" {
			c.connStr = unquote(words[2])
			if c.connStr == "" {
				return fmt.Errorf("empty connection string")
			}
		}
		if c.name == "basebackup" && len(words) > 2 && words[len(words)-1] == "lazy" {
			c.lazy, words = true, words[:len(words)-1]
		}
		if c.name == "basebackup" && len(words) == 4 {
			return fmt.Errorf("basebackup's fourth argument is %q, want lazy", words[3])
		}
		if c.name == "basebackup" && len(words) == 3 {
			if c.lsn, err = pgdata.ParseLSN(words[2]); err != nil {
				return err
			}
			if c.lsn == 0 {
				return fmt.Errorf("LSN 0/0 is not a position in the WAL")
			}
		}
	}
	return nil
}

// unquote strips one pair of single quotes around a connection string,
// as a user may write it in psql.
func unquote(s string) string {
	if len(s) >= 2 && s[0] == '\'' && s[len(s)-1] == '\'' {
		return s[1 : len(s)-1]
	}
	return s
}

// truncate shortens outside input quoted in an error message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
