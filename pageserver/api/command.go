package api

import (
	"strconv"
	"strings"

	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// Command is one command of the page service, as a typed value: the
// client writes it with String, the server reads it with ParseCommand,
// and ParseCommand(c.String()) gives c back. Each command is its own
// type (BranchCreate, Basebackup, ...); the server switches on the type.
type Command interface {
	// String is the command line, as ParseCommand reads it.
	String() string
	// Name is the command word, lower case (branch_create).
	Name() string
	// TenantID is the tenant the command acts on; zero for the commands
	// that take none (and tenant_create without one).
	TenantID() id.TenantID
}

// IdentifySystem asks what the server is: its name, version and the
// PostgreSQL major version it serves.
type IdentifySystem struct{}

// Status asks for the page server's one status row.
type Status struct{}

// TenantCreate creates a tenant; a zero Tenant asks for a fresh id.
// Generation is its first attachment's generation (0: none; only with a
// tenant id).
type TenantCreate struct {
	Tenant     id.TenantID
	Generation uint32
}

// TenantAttach attaches a tenant from remote storage at Generation (1 or
// more), or moves a tenant the server holds to it.
type TenantAttach struct {
	Tenant     id.TenantID
	Generation uint32
}

// TenantDetach uploads everything of a tenant and forgets it locally.
type TenantDetach struct{ Tenant id.TenantID }

// TenantList lists the tenants.
type TenantList struct{}

// TenantDelete deletes a tenant with everything it holds.
type TenantDelete struct{ Tenant id.TenantID }

// GC runs garbage collection on a tenant's timelines now.
type GC struct{ Tenant id.TenantID }

// TenantConfig applies Change (none: just show) to a tenant's settings
// and answers them all (TenantConfigColumns).
type TenantConfig struct {
	Tenant id.TenantID
	Change RetentionChange
}

// Import creates branch Branch from a tar of a stopped data directory,
// which follows in COPY IN.
type Import struct {
	Tenant id.TenantID
	// Branch is the new branch's name (CheckBranchName).
	Branch string
}

// BranchCreate creates branch Branch at Start.
type BranchCreate struct {
	Tenant id.TenantID
	// Branch is the new branch's name (CheckBranchName).
	Branch string
	// Start is the ancestor timeline and the point on it.
	Start StartPoint
}

// BranchList lists a tenant's branches (BranchColumns), or one branch
// without its sizes (BranchStateColumns).
type BranchList struct {
	Tenant id.TenantID
	// Branch, a branch name or a timeline id (CheckTimelineRef), asks for
	// that branch only, and without the sizes, which cost a look at the
	// size of every relation of the branch: what zenith pg start reads,
	// which must not wait for them. Empty: every branch, with sizes.
	Branch string
}

// BranchDelete deletes a branch.
type BranchDelete struct {
	Tenant id.TenantID
	// Timeline is the branch: a name or a timeline id (CheckTimelineRef).
	Timeline string
}

// Basebackup asks for a tar of a timeline's data directory in COPY OUT.
type Basebackup struct {
	Tenant id.TenantID
	// Timeline is a branch name or a timeline id (CheckTimelineRef).
	Timeline string
	// LSN is the point of the backup; 0 means the last record.
	LSN pgdata.LSN
	// Lazy leaves relation files out, listed with their sizes in
	// LazyManifestName.
	Lazy bool
}

// CallMeMaybe points a timeline's WAL receiver at a compute.
type CallMeMaybe struct {
	Tenant id.TenantID
	// Timeline is a branch name or a timeline id (CheckTimelineRef).
	Timeline string
	// ConnStr is the compute's connection string; never empty.
	ConnStr string
}

// Safekeepers makes a timeline's WAL receiver stream from safekeepers.
type Safekeepers struct {
	Tenant id.TenantID
	// Timeline is a branch name or a timeline id (CheckTimelineRef).
	Timeline string
	// Addrs are the safekeepers' libpq listeners, host:port
	// (CheckSafekeeperAddrs).
	Addrs []string
}

// PageStream switches the session to the page stream (COPY BOTH) of a
// timeline.
type PageStream struct {
	Tenant id.TenantID
	// Timeline is a branch name or a timeline id (CheckTimelineRef).
	Timeline string
}

func (IdentifySystem) Name() string { return "identify_system" }
func (Status) Name() string         { return "status" }
func (TenantCreate) Name() string   { return "tenant_create" }
func (TenantAttach) Name() string   { return "tenant_attach" }
func (TenantDetach) Name() string   { return "tenant_detach" }
func (TenantList) Name() string     { return "tenant_list" }
func (TenantDelete) Name() string   { return "tenant_delete" }
func (GC) Name() string             { return "gc" }
func (TenantConfig) Name() string   { return "tenant_config" }
func (Import) Name() string         { return "import" }
func (BranchCreate) Name() string   { return "branch_create" }
func (BranchList) Name() string     { return "branch_list" }
func (BranchDelete) Name() string   { return "branch_delete" }
func (Basebackup) Name() string     { return "basebackup" }
func (CallMeMaybe) Name() string    { return "callmemaybe" }
func (Safekeepers) Name() string    { return "safekeepers" }
func (PageStream) Name() string     { return "pagestream" }

func (IdentifySystem) TenantID() id.TenantID { return id.TenantID{} }
func (Status) TenantID() id.TenantID         { return id.TenantID{} }
func (c TenantCreate) TenantID() id.TenantID { return c.Tenant }
func (c TenantAttach) TenantID() id.TenantID { return c.Tenant }
func (c TenantDetach) TenantID() id.TenantID { return c.Tenant }
func (TenantList) TenantID() id.TenantID     { return id.TenantID{} }
func (c TenantDelete) TenantID() id.TenantID { return c.Tenant }
func (c GC) TenantID() id.TenantID           { return c.Tenant }
func (c TenantConfig) TenantID() id.TenantID { return c.Tenant }
func (c Import) TenantID() id.TenantID       { return c.Tenant }
func (c BranchCreate) TenantID() id.TenantID { return c.Tenant }
func (c BranchList) TenantID() id.TenantID   { return c.Tenant }
func (c BranchDelete) TenantID() id.TenantID { return c.Tenant }
func (c Basebackup) TenantID() id.TenantID   { return c.Tenant }
func (c CallMeMaybe) TenantID() id.TenantID  { return c.Tenant }
func (c Safekeepers) TenantID() id.TenantID  { return c.Tenant }
func (c PageStream) TenantID() id.TenantID   { return c.Tenant }

// line joins a command word and its arguments with single spaces.
func line(words ...string) string { return strings.Join(words, " ") }

func (c IdentifySystem) String() string { return c.Name() }
func (c Status) String() string         { return c.Name() }
func (c TenantList) String() string     { return c.Name() }
func (c TenantDelete) String() string   { return line(c.Name(), c.Tenant.String()) }
func (c GC) String() string             { return line(c.Name(), c.Tenant.String()) }

func (c BranchList) String() string {
	if c.Branch == "" {
		return line(c.Name(), c.Tenant.String())
	}
	return line(c.Name(), c.Tenant.String(), c.Branch)
}

func (c TenantCreate) String() string {
	switch {
	case c.Tenant.IsZero():
		return c.Name()
	case c.Generation == 0:
		return line(c.Name(), c.Tenant.String())
	}
	return line(c.Name(), c.Tenant.String(), strconv.FormatUint(uint64(c.Generation), 10))
}

func (c TenantAttach) String() string {
	return line(c.Name(), c.Tenant.String(), strconv.FormatUint(uint64(c.Generation), 10))
}

func (c TenantDetach) String() string { return line(c.Name(), c.Tenant.String()) }

func (c TenantConfig) String() string {
	return line(append([]string{c.Name(), c.Tenant.String()}, c.Change.Args()...)...)
}

func (c Import) String() string { return line(c.Name(), c.Tenant.String(), c.Branch) }

func (c BranchCreate) String() string {
	return line(c.Name(), c.Tenant.String(), c.Branch, c.Start.String())
}

func (c BranchDelete) String() string { return line(c.Name(), c.Tenant.String(), c.Timeline) }

func (c Basebackup) String() string {
	s := line(c.Name(), c.Tenant.String(), c.Timeline)
	if c.LSN != 0 {
		s += " " + c.LSN.String()
	}
	if c.Lazy {
		s += " lazy"
	}
	return s
}

// String quotes the connection string (the last argument is the rest of
// the line, one pair of quotes stripped), so that it reads back as it is.
func (c CallMeMaybe) String() string {
	return line(c.Name(), c.Tenant.String(), c.Timeline, "'"+c.ConnStr+"'")
}

func (c Safekeepers) String() string {
	return line(c.Name(), c.Tenant.String(), c.Timeline, strings.Join(c.Addrs, ","))
}

func (c PageStream) String() string { return line(c.Name(), c.Tenant.String(), c.Timeline) }
