package api

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"strings"
	"unicode"

	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// The kinds of ParseError, for errors.Is: the server answers each with
// its own SQLSTATE.
var (
	// ErrCommandSyntax is an empty line, an unknown command or a wrong
	// number of arguments (42601).
	ErrCommandSyntax = errors.New("page service command syntax")
	// ErrCommandArgument is a malformed argument: an id, LSN, time, name
	// or address that does not parse (22023).
	ErrCommandArgument = errors.New("page service command argument")
	// ErrNoParameter is a "$n" word with no parameter n (42P02).
	ErrNoParameter = errors.New("no such parameter")
)

// ParseError is a command line ParseCommand refuses. It wraps one of
// ErrCommandSyntax, ErrCommandArgument and ErrNoParameter.
type ParseError struct {
	// Kind is the sentinel the error wraps.
	Kind error
	// Message says what is wrong, quoting (a bounded part of) the input.
	Message string
	// Hint is the usage of the command, or the list of commands; may be
	// empty.
	Hint string
}

func (e *ParseError) Error() string { return e.Message }

// Unwrap returns the kind of the error.
func (e *ParseError) Unwrap() error { return e.Kind }

// syntax is a command's arguments, as the usage in errors shows them; min
// and max count them (max -1: the last one takes the rest of the line).
type syntax struct {
	usage    string
	min, max int
	parse    func(args []string) (Command, error)
}

// commands is the grammar: every command the page service takes, by its
// word. Every command that takes arguments takes the tenant first.
var commands = map[string]syntax{
	"identify_system": {"identify_system", 0, 0, func([]string) (Command, error) { return IdentifySystem{}, nil }},
	"status":          {"status", 0, 0, func([]string) (Command, error) { return Status{}, nil }},
	"tenant_create":   {"tenant_create [tenant_id [generation]]", 0, 2, parseTenantCreate},
	"tenant_attach":   {"tenant_attach <tenant_id> <generation>", 2, 2, parseTenantAttach},
	"tenant_detach":   {"tenant_detach <tenant_id>", 1, 1, parseTenantOnly(func(t id.TenantID) Command { return TenantDetach{t} })},
	"tenant_list":     {"tenant_list", 0, 0, func([]string) (Command, error) { return TenantList{}, nil }},
	"tenant_delete":   {"tenant_delete <tenant_id>", 1, 1, parseTenantOnly(func(t id.TenantID) Command { return TenantDelete{t} })},
	"gc":              {"gc <tenant_id>", 1, 1, parseTenantOnly(func(t id.TenantID) Command { return GC{t} })},
	"tenant_config":   {"tenant_config <tenant_id> [gc_horizon=<bytes>] [pitr_interval=<duration>]", 1, 3, parseTenantConfig},
	"import":          {"import <tenant_id> <branch>  (then COPY IN of a tar of a stopped data directory)", 2, 2, parseImport},
	"branch_create":   {"branch_create <tenant_id> <name> <branch|timeline_id>[@<lsn>|@<RFC 3339 time>]", 3, 3, parseBranchCreate},
	"branch_list":     {"branch_list <tenant_id> [<branch|timeline_id>]", 1, 2, parseBranchList},
	"branch_delete":   {"branch_delete <tenant_id> <branch|timeline_id>", 2, 2, parseBranchDelete},
	"basebackup":      {"basebackup <tenant_id> <branch|timeline_id> [lsn] [lazy]", 2, 4, parseBasebackup},
	"callmemaybe":     {"callmemaybe <tenant_id> <branch|timeline_id> <connection string>", 3, -1, parseCallMeMaybe},
	"safekeepers":     {"safekeepers <tenant_id> <branch|timeline_id> <host:port>[,<host:port>...]", 3, 3, parseSafekeepers},
	"pagestream":      {"pagestream <tenant_id> <branch|timeline_id>", 2, 2, parsePageStream},
}

// commandList is the hint for an unknown command.
const commandList = "commands: identify_system, status, tenant_create, tenant_attach, tenant_detach, tenant_list, tenant_delete, tenant_config, gc, import, branch_create, branch_list, branch_delete, basebackup, callmemaybe, safekeepers, pagestream"

// CommandNames are the words of every command of the page service.
func CommandNames() []string {
	names := make([]string, 0, len(commands))
	for name := range commands {
		names = append(names, name)
	}
	return names
}

// ParseCommand parses a command line. args are the extended protocol's
// parameters: a word "$n" stands for args[n-1]. Errors are *ParseError.
func ParseCommand(line string, args []string) (Command, error) {
	words := strings.Fields(line)
	if len(words) == 0 {
		return nil, &ParseError{Kind: ErrCommandSyntax, Message: "empty command"}
	}
	name := strings.ToLower(words[0])
	syn, ok := commands[name]
	if !ok {
		return nil, &ParseError{Kind: ErrCommandSyntax, Message: fmt.Sprintf("unknown command %q", truncate(words[0], 64)), Hint: commandList}
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
		return nil, &ParseError{Kind: ErrCommandSyntax,
			Message: fmt.Sprintf("%s takes %s arguments, got %d", name, argCount(syn.min, syn.max), len(words)),
			Hint:    "usage: " + syn.usage}
	}
	for i, w := range words {
		v, err := substitute(w, args)
		if err != nil {
			return nil, err
		}
		words[i] = v
	}
	c, err := syn.parse(words)
	if err != nil {
		return nil, &ParseError{Kind: ErrCommandArgument, Message: err.Error(), Hint: "usage: " + syn.usage}
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
		return "", &ParseError{Kind: ErrNoParameter, Message: fmt.Sprintf("there is no parameter $%d", n)}
	}
	return args[n-1], nil
}

func parseTenantCreate(args []string) (Command, error) {
	var c TenantCreate
	var err error
	if len(args) > 0 {
		if c.Tenant, err = id.ParseTenantID(args[0]); err != nil {
			return nil, err
		}
	}
	if len(args) > 1 {
		if c.Generation, err = parseGeneration(args[1]); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func parseTenantAttach(args []string) (Command, error) {
	t, err := id.ParseTenantID(args[0])
	if err != nil {
		return nil, err
	}
	g, err := parseGeneration(args[1])
	if err != nil {
		return nil, err
	}
	return TenantAttach{Tenant: t, Generation: g}, nil
}

// parseGeneration reads a generation of an attachment: a decimal number,
// 1 or more.
func parseGeneration(s string) (uint32, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("generation %q: want a decimal number, 1 or more", s)
	}
	return uint32(n), nil
}

// parseTenantOnly parses the commands whose one argument is the tenant.
func parseTenantOnly(make func(id.TenantID) Command) func([]string) (Command, error) {
	return func(args []string) (Command, error) {
		t, err := id.ParseTenantID(args[0])
		if err != nil {
			return nil, err
		}
		return make(t), nil
	}
}

func parseTenantConfig(args []string) (Command, error) {
	t, err := id.ParseTenantID(args[0])
	if err != nil {
		return nil, err
	}
	c := TenantConfig{Tenant: t}
	for _, w := range args[1:] {
		if err := c.Change.ParseArg(w); err != nil {
			return nil, err
		}
	}
	return c, nil
}

func parseImport(args []string) (Command, error) {
	t, err := id.ParseTenantID(args[0])
	if err != nil {
		return nil, err
	}
	if err := CheckBranchName(args[1]); err != nil {
		return nil, err
	}
	return Import{Tenant: t, Branch: args[1]}, nil
}

func parseBranchCreate(args []string) (Command, error) {
	t, err := id.ParseTenantID(args[0])
	if err != nil {
		return nil, err
	}
	if err := CheckBranchName(args[1]); err != nil {
		return nil, err
	}
	start, err := ParseStartPoint(args[2])
	if err != nil {
		return nil, err
	}
	return BranchCreate{Tenant: t, Branch: args[1], Start: start}, nil
}

// tenantTimeline parses the two first arguments of the commands about a
// timeline: a tenant id and a timeline reference.
func tenantTimeline(args []string) (id.TenantID, string, error) {
	t, err := id.ParseTenantID(args[0])
	if err != nil {
		return t, "", err
	}
	if err := CheckTimelineRef(args[1]); err != nil {
		return t, "", err
	}
	return t, args[1], nil
}

func parseBranchList(args []string) (Command, error) {
	if len(args) == 1 {
		t, err := id.ParseTenantID(args[0])
		if err != nil {
			return nil, err
		}
		return BranchList{Tenant: t}, nil
	}
	t, tl, err := tenantTimeline(args)
	if err != nil {
		return nil, err
	}
	return BranchList{Tenant: t, Branch: tl}, nil
}

func parseBranchDelete(args []string) (Command, error) {
	t, tl, err := tenantTimeline(args)
	if err != nil {
		return nil, err
	}
	return BranchDelete{Tenant: t, Timeline: tl}, nil
}

func parsePageStream(args []string) (Command, error) {
	t, tl, err := tenantTimeline(args)
	if err != nil {
		return nil, err
	}
	return PageStream{Tenant: t, Timeline: tl}, nil
}

func parseBasebackup(args []string) (Command, error) {
	t, tl, err := tenantTimeline(args)
	if err != nil {
		return nil, err
	}
	c := Basebackup{Tenant: t, Timeline: tl}
	if len(args) > 2 && args[len(args)-1] == "lazy" {
		c.Lazy, args = true, args[:len(args)-1]
	}
	if len(args) == 4 {
		return nil, fmt.Errorf("basebackup's fourth argument is %q, want lazy", args[3])
	}
	if len(args) == 3 {
		if c.LSN, err = pgdata.ParseLSN(args[2]); err != nil {
			return nil, err
		}
		if c.LSN == 0 {
			return nil, fmt.Errorf("LSN 0/0 is not a position in the WAL")
		}
	}
	return c, nil
}

func parseCallMeMaybe(args []string) (Command, error) {
	t, tl, err := tenantTimeline(args)
	if err != nil {
		return nil, err
	}
	c := CallMeMaybe{Tenant: t, Timeline: tl, ConnStr: unquote(args[2])}
	if c.ConnStr == "" {
		return nil, fmt.Errorf("empty connection string")
	}
	return c, nil
}

func parseSafekeepers(args []string) (Command, error) {
	t, tl, err := tenantTimeline(args)
	if err != nil {
		return nil, err
	}
	addrs := strings.Split(args[2], ",")
	if err := CheckSafekeeperAddrs(addrs); err != nil {
		return nil, err
	}
	return Safekeepers{Tenant: t, Timeline: tl, Addrs: addrs}, nil
}

// unquote strips one pair of single quotes around a connection string,
// as a user may write it in psql.
func unquote(s string) string {
	if len(s) >= 2 && s[0] == '\'' && s[len(s)-1] == '\'' {
		return s[1 : len(s)-1]
	}
	return s
}

// CheckSafekeeperAddrs accepts a non-empty list of distinct host:port
// addresses whose host is a name or an IP address.
func CheckSafekeeperAddrs(addrs []string) error {
	if len(addrs) == 0 {
		return errors.New("no safekeepers given")
	}
	seen := make(map[string]bool)
	for _, a := range addrs {
		host, port, err := net.SplitHostPort(a)
		if err != nil {
			return fmt.Errorf("safekeeper address %q: want host:port", truncate(a, 64))
		}
		if n, err := strconv.ParseUint(port, 10, 16); err != nil || n == 0 {
			return fmt.Errorf("safekeeper address %q: bad port", truncate(a, 64))
		}
		if !validHost(host) {
			return fmt.Errorf("safekeeper address %q: bad host", truncate(a, 64))
		}
		if seen[a] {
			return fmt.Errorf("safekeeper %s given twice", a)
		}
		seen[a] = true
	}
	return nil
}

// validHost accepts an IP address or a DNS name: nothing that could end a
// value of a connection string.
func validHost(h string) bool {
	if net.ParseIP(h) != nil {
		return true
	}
	if h == "" || len(h) > 253 {
		return false
	}
	for _, c := range h {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
