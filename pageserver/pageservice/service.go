package pageservice

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/pageserver/api"
	"github.com/zenithdb/zenith/pageserver/basebackup"
	"github.com/zenithdb/zenith/pageserver/datadir"
	"github.com/zenithdb/zenith/pageserver/walingest"
	"github.com/zenithdb/zenith/pgwire"
	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/auth"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/tarfile"
)

// Service is the page server's libpq endpoint (a pgwire.Handler): management
// commands answered with text rows, basebackup as COPY OUT, import as
// COPY IN, and the page stream as COPY BOTH. See api.ParseCommand for
// the commands, CommandNeeds for their tokens and SQLError for the
// SQLSTATEs of their errors. What it knows of tenants, branches and
// timelines it asks of its Tenants.
type Service struct {
	tenants   Tenants
	metrics   Metrics
	importDir string
	version   string
	log       zerolog.Logger
}

// Config is what a Service is made of.
type Config struct {
	// Tenants is the tenant manager the commands act on.
	Tenants Tenants
	// Metrics are the collectors the service updates; the caller
	// registers them.
	Metrics Metrics
	// ImportDir is where an import unpacks the uploaded data directory,
	// each in a temporary directory of its own, removed afterwards.
	ImportDir string
	// Version is the server's version, as identify_system reports it.
	Version string
	Log     zerolog.Logger
}

// New returns the page service of cfg.
func New(cfg Config) *Service {
	return &Service{tenants: cfg.Tenants, metrics: cfg.Metrics, importDir: cfg.ImportDir, version: cfg.Version, log: cfg.Log}
}

// Tenants is what the page service uses of the tenant manager. A
// tenant is named by its id and a timeline by a reference (a branch
// name or a timeline id, api.CheckTimelineRef); errors are those SQLError
// maps (repo's and api's sentinels), or *pgwire.Error.
type Tenants interface {
	// Status is the server's summary as the status command's row.
	Status() StatusRow
	// CreateTenant creates a tenant (a fresh id if tid is zero) attached
	// at gen and returns its id.
	CreateTenant(ctx context.Context, tid id.TenantID, gen repo.Generation) (id.TenantID, error)
	// ListTenants returns the ids of the tenants served.
	ListTenants() []id.TenantID
	// AttachTenant serves tenant tid at generation gen.
	AttachTenant(ctx context.Context, tid id.TenantID, gen repo.Generation) (AttachedTenant, error)
	// DetachTenant stops serving tenant tid, uploading it first.
	DetachTenant(ctx context.Context, tid id.TenantID) error
	// DeleteTenant deletes tenant tid here and in remote storage.
	DeleteTenant(tid id.TenantID) error
	// Branches describes every branch of tenant tid.
	Branches(ctx context.Context, tid id.TenantID) ([]api.BranchInfo, error)
	// Branch describes the branch ref (a name, or the timeline id of a
	// branch) of tenant tid without its sizes, which it does not compute.
	Branch(ctx context.Context, tid id.TenantID, ref string) (api.BranchInfo, error)
	// CreateBranch creates branch name of tenant tid at start.
	CreateBranch(ctx context.Context, tid id.TenantID, name string, start api.StartPoint) (api.BranchInfo, error)
	// DeleteBranch deletes the branch ref of tenant tid and returns its
	// timeline.
	DeleteBranch(tid id.TenantID, ref string) (id.TimelineID, error)
	// GC collects the garbage of tenant tid's timelines.
	GC(ctx context.Context, tid id.TenantID) error
	// Configure changes tenant tid's settings and returns them all.
	Configure(tid id.TenantID, change api.RetentionChange) ([]api.TenantSetting, error)
	// CheckBranchFree fails (api.ErrBranchExists) if tenant tid has a
	// branch called name: an import checks before its upload.
	CheckBranchFree(tid id.TenantID, name string) error
	// Import imports the stopped data directory dir as branch name of
	// tenant tid; locations are its tablespaces' (walingest.ImportDataDir).
	Import(ctx context.Context, tid id.TenantID, name, dir string, locations map[uint32]string) (api.BranchInfo, error)
	// Timeline resolves tenant tid's timeline ref.
	Timeline(tid id.TenantID, ref string) (*repo.Timeline, error)
	// WaitForLSN waits, at most the server's wait_lsn_timeout, until tl
	// has ingested WAL up to lsn (57014 if it does not in time).
	WaitForLSN(ctx context.Context, tl *repo.Timeline, lsn pgdata.LSN) error
	// RecordBefore checks that a record of the history of tl (a timeline
	// of tenant tid) ends at lsn and returns its start, 0 if unknown
	// (api.ErrNotRecordBoundary if none ends there).
	RecordBefore(ctx context.Context, tid id.TenantID, tl *repo.Timeline, lsn pgdata.LSN) (pgdata.LSN, error)
	// WAL returns the WAL side of tenant tid's timeline ref (55000 if it
	// takes no WAL).
	WAL(tid id.TenantID, ref string) (TimelineWAL, error)
	// ReplicaWAL returns the stored WAL of tenant tid's timeline ref as
	// its walsender serves it to read replicas (55000 if it takes no
	// WAL).
	ReplicaWAL(tid id.TenantID, ref string) (ReplicaWAL, error)
}

// StatusRow is the status command's answer: its columns and their values.
type StatusRow struct {
	Columns, Values []string
}

// AttachedTenant is what tenant_attach answers of the tenant it attached.
type AttachedTenant struct {
	ID         id.TenantID
	Generation repo.Generation
	Timelines  int
}

// TimelineWAL is what the page service sets of a timeline's WAL receiver.
type TimelineWAL interface {
	// SetSource sets (and persists) the compute WAL comes from; ""
	// stops streaming.
	SetSource(connStr string) error
	// SetSafekeepers sets (and persists) the safekeepers (host:port) WAL
	// comes from instead; tenant is the timeline's tenant.
	SetSafekeepers(tenant id.TenantID, addrs []string) error
}

// Metrics are the page service's Prometheus collectors.
type Metrics struct {
	// PageRequests counts page-stream requests by kind and result (ok,
	// error).
	PageRequests *prometheus.CounterVec
	// GetPageSeconds is the latency of GetPage requests, LSN wait
	// included.
	GetPageSeconds prometheus.Histogram
	// Basebackups counts basebackups by result (ok, error).
	Basebackups *prometheus.CounterVec
}

// Handle runs one command: of a replication session (replication.go),
// or of the page service's grammar.
func (ps *Service) Handle(ctx context.Context, sess *pgwire.Session, line string, args []string) error {
	if pgwire.IsReplicationSession(sess.Params) {
		return ps.replication(ctx, sess, line)
	}
	c, err := parseCommand(line, args)
	if err != nil {
		return err
	}
	if err := authorize(sess, needOf(c), c.TenantID()); err != nil {
		return err
	}
	if err := ps.run(ctx, sess, c); err != nil {
		err = SQLError(err)
		var pe *pgwire.Error
		if !errors.As(err, &pe) {
			// Not the client's mistake: the operator needs to know.
			ps.log.Error().Err(err).Str("command", c.Name()).Msg("page service command failed")
		}
		return err
	}
	return nil
}

func (ps *Service) run(ctx context.Context, sess *pgwire.Session, cmd api.Command) error {
	ts := ps.tenants
	switch c := cmd.(type) {
	case api.IdentifySystem:
		if err := sess.Columns("server", "version", "pg_version"); err != nil {
			return err
		}
		return sess.Row("zenith-pageserver", ps.version, strconv.Itoa(pgdata.PGMajorVersion))
	case api.Status:
		st := ts.Status()
		if err := sess.Columns(st.Columns...); err != nil {
			return err
		}
		return sess.Row(st.Values...)
	case api.TenantCreate:
		tid, err := ts.CreateTenant(ctx, c.Tenant, repo.Generation(c.Generation))
		if err != nil {
			return err
		}
		if err := sess.Columns("tenant_id"); err != nil {
			return err
		}
		return sess.Row(tid.String())
	case api.TenantList:
		if err := sess.Columns("tenant_id"); err != nil {
			return err
		}
		for _, tid := range ts.ListTenants() {
			if err := sess.Row(tid.String()); err != nil {
				return err
			}
		}
		return nil
	case api.BranchList:
		if c.Branch == "" {
			return ps.branchRowsOf(ctx, sess, c.Tenant)
		}
		b, err := ts.Branch(ctx, c.Tenant, c.Branch)
		if err != nil {
			return err
		}
		if err := sess.Columns(api.BranchStateColumns...); err != nil {
			return err
		}
		return sess.Row(b.StateRow()...)
	case api.BranchDelete:
		tid, err := ts.DeleteBranch(c.Tenant, c.Timeline)
		if err != nil {
			return err
		}
		if err := sess.Columns("timeline_id"); err != nil {
			return err
		}
		return sess.Row(tid.String())
	case api.GC:
		if err := ts.GC(ctx, c.Tenant); err != nil {
			return err
		}
		return ps.branchRowsOf(ctx, sess, c.Tenant)
	case api.TenantConfig:
		settings, err := ts.Configure(c.Tenant, c.Change)
		if err != nil {
			return err
		}
		if err := sess.Columns(api.TenantConfigColumns...); err != nil {
			return err
		}
		for _, st := range settings {
			if err := sess.Row(st.Name, st.Value); err != nil {
				return err
			}
		}
		return nil
	case api.TenantAttach:
		t, err := ts.AttachTenant(ctx, c.Tenant, repo.Generation(c.Generation))
		if err != nil {
			return err
		}
		if err := sess.Columns("tenant_id", "generation", "timelines"); err != nil {
			return err
		}
		return sess.Row(t.ID.String(), t.Generation.String(), strconv.Itoa(t.Timelines))
	case api.TenantDetach:
		if err := ts.DetachTenant(ctx, c.Tenant); err != nil {
			return err
		}
		sess.SetTag("TENANT_DETACH")
		return nil
	case api.TenantDelete:
		if err := ts.DeleteTenant(c.Tenant); err != nil {
			return err
		}
		sess.SetTag("TENANT_DELETE")
		return nil
	case api.BranchCreate:
		info, err := ts.CreateBranch(ctx, c.Tenant, c.Branch, c.Start)
		if err != nil {
			return err
		}
		return branchRows(sess, info)
	case api.Import:
		return ps.importCommand(ctx, sess, c)
	case api.Basebackup:
		return ps.basebackup(ctx, sess, c)
	case api.CallMeMaybe:
		w, err := ts.WAL(c.Tenant, c.Timeline)
		if err != nil {
			return err
		}
		if err := w.SetSource(c.ConnStr); err != nil {
			return err
		}
		sess.SetTag(strings.ToUpper(c.Name()))
		return nil
	case api.Safekeepers:
		w, err := ts.WAL(c.Tenant, c.Timeline)
		if err != nil {
			return err
		}
		if err := w.SetSafekeepers(c.Tenant, c.Addrs); err != nil {
			return err
		}
		sess.SetTag(strings.ToUpper(c.Name()))
		return nil
	case api.PageStream:
		tl, err := ts.Timeline(c.Tenant, c.Timeline)
		if err != nil {
			return err
		}
		return ps.pagestream(ctx, sess, tl)
	}
	return fmt.Errorf("command %q is parsed but not handled", cmd.Name())
}

// branchRowsOf answers every branch of tenant tid.
func (ps *Service) branchRowsOf(ctx context.Context, sess *pgwire.Session, tid id.TenantID) error {
	infos, err := ps.tenants.Branches(ctx, tid)
	if err != nil {
		return err
	}
	return branchRows(sess, infos...)
}

func branchRows(sess *pgwire.Session, infos ...api.BranchInfo) error {
	if err := sess.Columns(api.BranchColumns...); err != nil {
		return err
	}
	for _, b := range infos {
		if err := sess.Row(b.Row()...); err != nil {
			return err
		}
	}
	return nil
}

// importCommand receives a tar of a stopped data directory in COPY IN and
// imports it as a new branch. The name is checked before the upload so
// that a taken name fails at once; the tar is unpacked into a temporary
// directory under the working directory, removed whatever happens.
func (ps *Service) importCommand(ctx context.Context, sess *pgwire.Session, c api.Import) error {
	if err := ps.tenants.CheckBranchFree(c.Tenant, c.Branch); err != nil {
		return err
	}
	r, err := sess.CopyIn()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(ps.importDir, 0o700); err != nil {
		return err
	}
	dir, err := os.MkdirTemp(ps.importDir, c.Tenant.String()+"-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	start := time.Now()
	locations, err := tarfile.ExtractImport(r, dir)
	if err != nil {
		return err
	}
	ps.log.Info().Str("tenant", c.Tenant.String()).Str("branch", c.Branch).Int64("bytes", r.BytesRead()).
		Dur("took", time.Since(start)).Msg("received data directory to import")
	info, err := ps.tenants.Import(ctx, c.Tenant, c.Branch, dir, locations)
	if err != nil {
		return err
	}
	return branchRows(sess, info)
}

// basebackup streams a tar of a timeline as of an LSN in COPY OUT. The
// LSN defaults to the last record; a later one is waited for. Both fail
// at once on a timeline whose ingest stopped, unless the LSN is at or
// before where it stopped.
func (ps *Service) basebackup(ctx context.Context, sess *pgwire.Session, c api.Basebackup) (err error) {
	defer func() {
		if err != nil {
			ps.metrics.Basebackups.WithLabelValues("error").Inc()
		} else {
			ps.metrics.Basebackups.WithLabelValues("ok").Inc()
		}
	}()
	tl, err := ps.tenants.Timeline(c.Tenant, c.Timeline)
	if err != nil {
		return err
	}
	lsn := c.LSN
	if lsn == 0 {
		if lsn, err = LatestLSN(tl); err != nil {
			return err
		}
	} else if err := ps.tenants.WaitForLSN(ctx, tl, lsn); err != nil {
		return err
	}
	prev, err := ps.tenants.RecordBefore(ctx, c.Tenant, tl, lsn)
	if err != nil {
		return err
	}
	w, err := sess.CopyOut()
	if err != nil {
		return err
	}
	start := time.Now()
	var tm basebackup.Timings
	if err := basebackup.Basebackup(ctx, tl, lsn, w, basebackup.Options{Prev: prev, Lazy: c.Lazy, Timings: &tm}); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	ps.log.Info().Str("tenant", c.Tenant.String()).Str("timeline", tl.ID().String()).Stringer("lsn", lsn).
		Dur("took", time.Since(start)).Dur("start", tm.Start).Dur("files", tm.Files).Dur("databases", tm.Databases).
		Dur("sizes", tm.Sizes).Int("forks", tm.Forks).Dur("slrus", tm.SLRUs).Dur("end", tm.End).Msg("sent basebackup")
	return nil
}

// authorize checks that the session's token (if auth is on) meets need
// for tenant: 28000 if it does not.
func authorize(sess *pgwire.Session, need auth.Need, tenant id.TenantID) error {
	claims, ok := sess.Auth.(*auth.Claims)
	if !ok {
		return nil
	}
	if err := claims.Allow(need, tenant); err != nil {
		return pgwire.Errorf(pgwire.CodeInvalidAuthorization, "%v", err)
	}
	return nil
}

// SQLError gives an error of a command its SQLSTATE (see the command
// table in package pageserver's doc): unknown things 42704, taken
// names 42710, a branch with children 2BP01, bad input 22023, LSNs the timeline cannot serve 55000
// (those after the point where its ingest stopped included).
// Other errors stay internal errors (XX000).
func SQLError(err error) error {
	var pe *pgwire.Error
	if errors.As(err, &pe) {
		return err
	}
	code := ""
	switch {
	case errors.Is(err, repo.ErrTenantNotFound), errors.Is(err, repo.ErrTimelineNotFound), errors.Is(err, api.ErrBranchNotFound):
		code = pgwire.CodeUndefinedObject
	case errors.Is(err, repo.ErrTenantExists), errors.Is(err, repo.ErrTimelineExists), errors.Is(err, api.ErrBranchExists):
		code = pgwire.CodeDuplicateObject
	case errors.Is(err, api.ErrHasChildren), errors.Is(err, repo.ErrTimelineHasChildren):
		code = pgwire.CodeDependentObjects
	case errors.Is(err, walingest.ErrNotShutDown), errors.Is(err, tarfile.ErrBadTar), errors.Is(err, repo.ErrInvalidGeneration):
		code = pgwire.CodeInvalidParameterValue
	case errors.Is(err, repo.ErrIngestStopped):
		return &pgwire.Error{Code: pgwire.CodeObjectNotInPrereqState, Message: err.Error(),
			Hint: "the page server keeps the timeline's WAL; restart it once the cause is fixed and ingest resumes (its log says more)"}
	case errors.Is(err, repo.ErrBelowGCCutoff), errors.Is(err, repo.ErrBranchBeforeGCCutoff),
		errors.Is(err, repo.ErrBranchAfterLastLSN), errors.Is(err, repo.ErrLSNNotReached),
		errors.Is(err, api.ErrNotRecordBoundary), errors.Is(err, datadir.ErrNoControlFile),
		errors.Is(err, repo.ErrStaleGeneration), errors.Is(err, repo.ErrNoRemoteStorage):
		code = pgwire.CodeObjectNotInPrereqState
	default:
		return err
	}
	return &pgwire.Error{Code: code, Message: err.Error()}
}

// LatestLSN is the LSN a request without one is served at: the last
// record ingested. A timeline whose ingest stopped has WAL after that
// point that it cannot serve: the request fails (repo.ErrIngestStopped)
// rather than serve a state that lacks acknowledged commits.
func LatestLSN(tl *repo.Timeline) (pgdata.LSN, error) {
	if stop := tl.IngestStopped(); stop != nil {
		return 0, fmt.Errorf("the latest state of the timeline is not known: %w", stop)
	}
	return tl.LastRecordLSN(), nil
}
