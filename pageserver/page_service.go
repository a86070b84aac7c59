package pageserver

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

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

// The page service is the page server's libpq endpoint: management
// commands answered with text rows, basebackup as COPY OUT, import as
// COPY IN, and the page stream as COPY BOTH. See api.ParseCommand for
// the commands, commandNeeds for their tokens and sqlError for the
// SQLSTATEs of their errors.
type pageService struct{ s *Server }

// Handle runs one command.
func (ps *pageService) Handle(ctx context.Context, sess *pgwire.Session, line string, args []string) error {
	c, err := parseCommand(line, args)
	if err != nil {
		return err
	}
	if err := authorize(sess, needOf(c), c.TenantID()); err != nil {
		return err
	}
	if err := ps.run(ctx, sess, c); err != nil {
		err = sqlError(err)
		var pe *pgwire.Error
		if !errors.As(err, &pe) {
			// Not the client's mistake: the operator needs to know.
			ps.s.log.Error().Err(err).Str("command", c.Name()).Msg("page service command failed")
		}
		return err
	}
	return nil
}

func (ps *pageService) run(ctx context.Context, sess *pgwire.Session, cmd api.Command) error {
	s := ps.s
	switch c := cmd.(type) {
	case api.IdentifySystem:
		if err := sess.Columns("server", "version", "pg_version"); err != nil {
			return err
		}
		return sess.Row("zenith-pageserver", Version, strconv.Itoa(pgdata.PGMajorVersion))
	case api.Status:
		st := s.status()
		m := st.Memory
		if err := sess.Columns("tenants", "timelines", "uptime_seconds", "rss_bytes", "go_heap_bytes",
			"in_memory_layer_bytes", "in_memory_layer_limit", "page_cache_bytes", "page_cache_limit",
			"block_cache_bytes", "block_cache_limit", "wal_in_flight_bytes", "go_memory_limit", "open_layer_files", "max_open_layer_files",
			"disk_full", "disk_full_since", "disk_full_errors"); err != nil {
			return err
		}
		n := func(v int64) string { return strconv.FormatInt(v, 10) }
		return sess.Row(strconv.Itoa(st.Tenants), strconv.Itoa(st.Timelines), n(st.UptimeSeconds), n(m.RSSBytes), n(m.GoHeapBytes),
			n(m.InMemoryLayerBytes()), n(m.InMemoryLayerLimit), n(m.PageCacheBytes), n(m.PageCacheLimit),
			n(m.BlockCacheBytes), n(m.BlockCacheLimit), n(m.WALInFlightBytes), n(m.GoMemoryLimit), strconv.Itoa(m.OpenLayerFiles), strconv.Itoa(m.MaxOpenLayerFiles),
			st.DiskFull, st.DiskFullSince, n(st.DiskFullErrors))
	case api.TenantCreate:
		t, err := s.createTenant(ctx, c.Tenant, repo.Generation(c.Generation))
		if err != nil {
			return err
		}
		if err := sess.Columns("tenant_id"); err != nil {
			return err
		}
		return sess.Row(t.id.String())
	case api.TenantList:
		if err := sess.Columns("tenant_id"); err != nil {
			return err
		}
		for _, t := range s.tenants.list() {
			if err := sess.Row(t.id.String()); err != nil {
				return err
			}
		}
		return nil
	case api.BranchList:
		t, err := s.tenants.get(c.Tenant)
		if err != nil {
			return err
		}
		return branchRowsOf(ctx, s, sess, t)
	case api.BranchDelete:
		t, err := s.tenants.get(c.Tenant)
		if err != nil {
			return err
		}
		tid, err := t.deleteBranch(c.Timeline)
		if err != nil {
			return err
		}
		if err := sess.Columns("timeline_id"); err != nil {
			return err
		}
		return sess.Row(tid.String())
	case api.GC:
		t, err := s.tenants.get(c.Tenant)
		if err != nil {
			return err
		}
		if err := t.gc(ctx); err != nil {
			return err
		}
		return branchRowsOf(ctx, s, sess, t)
	case api.TenantConfig:
		t, err := s.tenants.get(c.Tenant)
		if err != nil {
			return err
		}
		settings, err := t.configure(c.Change)
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
		t, err := s.tenants.attach(ctx, c.Tenant, repo.Generation(c.Generation))
		if err != nil {
			return err
		}
		if err := sess.Columns("tenant_id", "generation", "timelines"); err != nil {
			return err
		}
		return sess.Row(t.id.String(), t.tn.Generation().String(), strconv.Itoa(len(t.tn.Timelines())))
	case api.TenantDetach:
		if err := s.tenants.detach(ctx, c.Tenant); err != nil {
			return err
		}
		sess.SetTag("TENANT_DETACH")
		return nil
	case api.TenantDelete:
		if err := s.tenants.delete(c.Tenant); err != nil {
			return err
		}
		sess.SetTag("TENANT_DELETE")
		return nil
	case api.BranchCreate:
		t, err := s.tenants.get(c.Tenant)
		if err != nil {
			return err
		}
		info, err := s.createBranch(ctx, t, c.Branch, c.Start)
		if err != nil {
			return err
		}
		return branchRows(sess, info)
	case api.Import:
		return ps.importCommand(ctx, sess, c)
	case api.Basebackup:
		return ps.basebackup(ctx, sess, c)
	case api.CallMeMaybe:
		w, err := s.timelineWAL(c.Tenant, c.Timeline)
		if err != nil {
			return err
		}
		if err := w.SetSource(c.ConnStr); err != nil {
			return err
		}
		sess.SetTag(strings.ToUpper(c.Name()))
		return nil
	case api.Safekeepers:
		w, err := s.timelineWAL(c.Tenant, c.Timeline)
		if err != nil {
			return err
		}
		if err := w.SetSafekeepers(c.Tenant, c.Addrs); err != nil {
			return err
		}
		sess.SetTag(strings.ToUpper(c.Name()))
		return nil
	case api.PageStream:
		_, tl, err := s.timeline(c.Tenant, c.Timeline)
		if err != nil {
			return err
		}
		return ps.pagestream(ctx, sess, tl)
	}
	return fmt.Errorf("command %q is parsed but not handled", cmd.Name())
}

// branchRowsOf answers every branch of t.
func branchRowsOf(ctx context.Context, s *Server, sess *pgwire.Session, t *tenant) error {
	infos, err := s.branchInfos(ctx, t)
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
func (ps *pageService) importCommand(ctx context.Context, sess *pgwire.Session, c api.Import) error {
	s := ps.s
	t, err := s.tenants.get(c.Tenant)
	if err != nil {
		return err
	}
	if _, ok := t.branchNamed(c.Branch); ok {
		return fmt.Errorf("branch %q of tenant %s: %w", c.Branch, t.id, errBranchExists)
	}
	r, err := sess.CopyIn()
	if err != nil {
		return err
	}
	parent := filepath.Join(s.dir, importDirName)
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return err
	}
	dir, err := os.MkdirTemp(parent, c.Tenant.String()+"-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(dir)
	start := time.Now()
	if err := tarfile.ExtractDataDir(r, dir); err != nil {
		return err
	}
	s.log.Info().Str("tenant", t.id.String()).Str("branch", c.Branch).Int64("bytes", r.BytesRead()).
		Dur("took", time.Since(start)).Msg("received data directory to import")
	br, err := t.importBranch(ctx, c.Branch, dir)
	if err != nil {
		return err
	}
	info, err := s.branchInfo(ctx, t, br)
	if err != nil {
		return err
	}
	return branchRows(sess, info)
}

// basebackup streams a tar of a timeline as of an LSN in COPY OUT. The
// LSN defaults to the last record; a later one is waited for. Both fail
// at once on a timeline whose ingest stopped, unless the LSN is at or
// before where it stopped.
func (ps *pageService) basebackup(ctx context.Context, sess *pgwire.Session, c api.Basebackup) (err error) {
	s := ps.s
	defer func() {
		if err != nil {
			s.metrics.basebackups.WithLabelValues("error").Inc()
		} else {
			s.metrics.basebackups.WithLabelValues("ok").Inc()
		}
	}()
	t, tl, err := s.timeline(c.Tenant, c.Timeline)
	if err != nil {
		return err
	}
	lsn := c.LSN
	if lsn == 0 {
		if lsn, err = latestLSN(tl); err != nil {
			return err
		}
	} else if err := s.waitForLSN(ctx, tl, lsn); err != nil {
		return err
	}
	prev, err := t.recordBefore(ctx, tl, lsn)
	if err != nil {
		return err
	}
	w, err := sess.CopyOut()
	if err != nil {
		return err
	}
	start := time.Now()
	if err := basebackup.Basebackup(ctx, tl, lsn, w, basebackup.Options{Prev: prev, Lazy: c.Lazy}); err != nil {
		return err
	}
	if err := w.Close(); err != nil {
		return err
	}
	s.log.Info().Str("tenant", t.id.String()).Str("timeline", tl.ID().String()).Stringer("lsn", lsn).
		Dur("took", time.Since(start)).Msg("sent basebackup")
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

// sqlError gives an error of a command its SQLSTATE (see the command
// table in the package's interface notes): unknown things 42704, taken
// names 42710, a branch with children 2BP01, bad input 22023, LSNs the timeline cannot serve 55000
// (those after the point where its ingest stopped included).
// Other errors stay internal errors (XX000).
func sqlError(err error) error {
	var pe *pgwire.Error
	if errors.As(err, &pe) {
		return err
	}
	code := ""
	switch {
	case errors.Is(err, repo.ErrTenantNotFound), errors.Is(err, repo.ErrTimelineNotFound), errors.Is(err, errBranchNotFound):
		code = pgwire.CodeUndefinedObject
	case errors.Is(err, repo.ErrTenantExists), errors.Is(err, repo.ErrTimelineExists), errors.Is(err, errBranchExists):
		code = pgwire.CodeDuplicateObject
	case errors.Is(err, errHasChildren), errors.Is(err, repo.ErrTimelineHasChildren):
		code = pgwire.CodeDependentObjects
	case errors.Is(err, walingest.ErrNotShutDown), errors.Is(err, tarfile.ErrBadTar), errors.Is(err, repo.ErrInvalidGeneration):
		code = pgwire.CodeInvalidParameterValue
	case errors.Is(err, repo.ErrIngestStopped):
		return &pgwire.Error{Code: pgwire.CodeObjectNotInPrereqState, Message: err.Error(),
			Hint: "the page server keeps the timeline's WAL; restart it once the cause is fixed and ingest resumes (its log says more)"}
	case errors.Is(err, repo.ErrBelowGCCutoff), errors.Is(err, repo.ErrBranchBeforeGCCutoff),
		errors.Is(err, repo.ErrBranchAfterLastLSN), errors.Is(err, repo.ErrLSNNotReached),
		errors.Is(err, errNotRecordBoundary), errors.Is(err, datadir.ErrNoControlFile),
		errors.Is(err, repo.ErrStaleGeneration), errors.Is(err, repo.ErrNoRemoteStorage):
		code = pgwire.CodeObjectNotInPrereqState
	default:
		return err
	}
	return &pgwire.Error{Code: code, Message: err.Error()}
}

// timeline resolves a tenant id and a timeline reference.
func (s *Server) timeline(tid id.TenantID, ref string) (*tenant, *repo.Timeline, error) {
	t, err := s.tenants.get(tid)
	if err != nil {
		return nil, nil, err
	}
	tl, err := t.timeline(ref)
	if err != nil {
		return nil, nil, err
	}
	return t, tl, nil
}

// timelineWAL resolves a tenant id and a timeline reference to the
// timeline's WAL side (timelineWALOf).
func (s *Server) timelineWAL(tid id.TenantID, ref string) (timelineWAL, error) {
	t, tl, err := s.timeline(tid, ref)
	if err != nil {
		return nil, err
	}
	return timelineWALOf(t, tl)
}

// timelineWALOf returns the WAL side of a tenant's timeline; 55000 if it
// takes no WAL.
func timelineWALOf(t *tenant, tl *repo.Timeline) (timelineWAL, error) {
	w := t.walOf(tl.ID())
	if w == nil {
		return nil, pgwire.Errorf(pgwire.CodeObjectNotInPrereqState, "timeline %s takes no WAL (see the page server's log)", tl.ID())
	}
	return w, nil
}

// waitForLSN waits, at most the configured wait_lsn_timeout, until tl has
// ingested WAL up to lsn. It fails at once (repo.ErrIngestStopped) if
// tl's ingest stopped before lsn.
func (s *Server) waitForLSN(ctx context.Context, tl *repo.Timeline, lsn pgdata.LSN) error {
	if lsn <= tl.LastRecordLSN() {
		return nil
	}
	timeout := time.Duration(s.cfg.WaitLSNTimeout)
	wctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	if err := tl.WaitForLSN(wctx, lsn); err != nil {
		if errors.Is(err, repo.ErrIngestStopped) {
			return err
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		return &pgwire.Error{Code: pgwire.CodeQueryCanceled,
			Message: fmt.Sprintf("timeline %s did not reach %v within wait_lsn_timeout (%v); it is at %v", tl.ID(), lsn, timeout, tl.LastRecordLSN()),
			Hint:    "is the timeline's WAL source (callmemaybe) streaming?"}
	}
	return nil
}

// latestLSN is the LSN a request without one is served at: the last
// record ingested. A timeline whose ingest stopped has WAL after that
// point that it cannot serve: the request fails (repo.ErrIngestStopped)
// rather than serve a state that lacks acknowledged commits.
func latestLSN(tl *repo.Timeline) (pgdata.LSN, error) {
	if stop := tl.IngestStopped(); stop != nil {
		return 0, fmt.Errorf("the latest state of the timeline is not known: %w", stop)
	}
	return tl.LastRecordLSN(), nil
}
