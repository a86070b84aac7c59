package pageservice

import (
	"errors"

	"github.com/zenithdb/zenith/pageserver/api"
	"github.com/zenithdb/zenith/pgwire"
	"github.com/zenithdb/zenith/repo/auth"
)

// CommandNeeds is what each command (api.ParseCommand's grammar) needs of
// a token when auth is on; the tenant of a Tenant command is its
// api.Command.TenantID. Management (tenants, WAL sources) needs an admin
// token; a tenant's data, a token for it.
var CommandNeeds = map[string]auth.Need{
	api.IdentifySystem{}.Name(): auth.AnyToken,
	api.Status{}.Name():         auth.AnyToken,
	api.TenantCreate{}.Name():   auth.Admin,
	api.TenantAttach{}.Name():   auth.Admin,
	api.TenantDetach{}.Name():   auth.Admin,
	api.TenantList{}.Name():     auth.Admin,
	api.TenantDelete{}.Name():   auth.Admin,
	api.GC{}.Name():             auth.Admin,
	api.TenantConfig{}.Name():   auth.Admin,
	api.Import{}.Name():         auth.Tenant,
	api.BranchCreate{}.Name():   auth.Tenant,
	api.BranchList{}.Name():     auth.Tenant,
	api.BranchDelete{}.Name():   auth.Tenant,
	api.Basebackup{}.Name():     auth.Tenant,
	api.CallMeMaybe{}.Name():    auth.Admin,
	api.Safekeepers{}.Name():    auth.Admin,
	api.PageStream{}.Name():     auth.Tenant,
}

// needOf is what command c needs of a token; a command missing from
// CommandNeeds needs an admin token.
func needOf(c api.Command) auth.Need {
	if n, ok := CommandNeeds[c.Name()]; ok {
		return n
	}
	return auth.Admin
}

// parseCommand parses a command line (api.ParseCommand). args are the
// extended protocol's parameters: a word "$n" stands for args[n-1].
// Errors are *pgwire.Error: 42601 for an unknown command or a wrong
// number of arguments, 22023 for a malformed argument, 42P02 for a
// missing parameter.
func parseCommand(line string, args []string) (api.Command, error) {
	c, err := api.ParseCommand(line, args)
	if err == nil {
		return c, nil
	}
	var pe *api.ParseError
	if !errors.As(err, &pe) {
		return nil, err
	}
	code := pgwire.CodeInvalidParameterValue
	switch {
	case errors.Is(err, api.ErrCommandSyntax):
		code = pgwire.CodeSyntaxError
	case errors.Is(err, api.ErrNoParameter):
		code = pgwire.CodeUndefinedParameter
	}
	return nil, &pgwire.Error{Code: code, Message: pe.Message, Hint: pe.Hint}
}
