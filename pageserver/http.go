package pageserver

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/zenithdb/zenith/pageserver/api"
	"github.com/zenithdb/zenith/pageserver/pageservice"
	"github.com/zenithdb/zenith/pgwire"
	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/auth"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// maxRequestBody bounds an HTTP request body: every request is a small
// JSON object.
const maxRequestBody = 64 << 10

// The HTTP API: the page service's management commands as JSON, and the
// Prometheus metrics.
//
//	GET  /v1/status                      Status
//	GET  /v1/tenant                      [{"tenant_id"}]
//	POST /v1/tenant {"tenant_id"?, "generation"?}  {"tenant_id"}     201
//	POST /v1/tenant/{id}/attach {"generation"}  {"tenant_id", "generation", "timelines"}
//	POST /v1/tenant/{id}/detach          {"tenant_id"} (uploads everything, removes it here)
//	DELETE /v1/tenant/{id}               {"tenant_id"}
//	POST /v1/tenant/{id}/gc              [BranchInfo] (flush and GC every timeline now)
//	GET  /v1/tenant/{id}/config          [api.TenantSetting]
//	PUT  /v1/tenant/{id}/config {"gc_horizon"?: bytes, "pitr_interval"?: "24h"}  [api.TenantSetting]
//	GET  /v1/tenant/{id}/timeline        [TimelineInfo]
//	GET  /v1/tenant/{id}/branch          [BranchInfo]
//	POST /v1/tenant/{id}/branch {"name", "start"}  BranchInfo        201
//	DELETE /v1/tenant/{id}/branch/{branch|timeline}  {"timeline_id"} (409 while it has children)
//	PUT  /v1/tenant/{id}/timeline/{timeline}/safekeepers {"safekeepers": ["host:port", ...]}
//	                                     TimelineInfo (the page service's safekeepers command)
//	GET  /metrics                        Prometheus text format
//	GET  /debug/pprof/...                Go runtime profiles (net/http/pprof)
//
// Errors are {"error": message, "code": SQLSTATE} with the status the
// SQLSTATE maps to (httpStatus).
//
// With auth on (auth_public_key), every route but /v1/status and
// /metrics needs "Authorization: Bearer <token>" (see routes for which
// scope): a missing, malformed, expired or foreign token is 401 (code
// 28P01), a token whose scope does not reach the route 403 (28000).
func (s *Server) httpServer() *http.Server {
	mux := auth.NewMux(s.verifier)
	s.routes(mux)
	return &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
	}
}

// routes registers every route of the HTTP API on mux, each with what it
// needs of a token when auth is on: /v1/status and /metrics are public
// (health checks and scraping), a tenant's routes need a token for it,
// the rest an admin token.
func (s *Server) routes(mux *auth.Mux) {
	mux.HandleFunc("GET /v1/status", auth.Public, func(w http.ResponseWriter, r *http.Request) {
		auth.WriteJSON(w, http.StatusOK, s.status())
	})
	mux.HandleFunc("GET /v1/tenant", auth.Admin, func(w http.ResponseWriter, r *http.Request) {
		out := []tenantJSON{}
		for _, t := range s.tenants.list() {
			out = append(out, tenantJSON{t.id})
		}
		auth.WriteJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("POST /v1/tenant", auth.Admin, func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			TenantID   string          `json:"tenant_id"`
			Generation repo.Generation `json:"generation"`
		}
		if !readJSON(w, r, &req) {
			return
		}
		var tid id.TenantID
		if req.TenantID != "" {
			var err error
			if tid, err = id.ParseTenantID(req.TenantID); err != nil {
				writeError(w, &pgwire.Error{Code: pgwire.CodeInvalidParameterValue, Message: err.Error()})
				return
			}
		}
		t, err := s.createTenant(r.Context(), tid, req.Generation)
		if err != nil {
			writeError(w, err)
			return
		}
		auth.WriteJSON(w, http.StatusCreated, tenantJSON{t.id})
	})
	mux.HandleFunc("GET /v1/tenant/{tenant}/timeline", auth.Tenant, func(w http.ResponseWriter, r *http.Request) {
		t, ok := s.httpTenant(w, r)
		if !ok {
			return
		}
		out := []TimelineInfo{}
		for _, info := range t.tn.Timelines() {
			ti, err := s.timelineInfo(t, info.ID)
			if err != nil {
				writeError(w, err)
				return
			}
			out = append(out, ti)
		}
		auth.WriteJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET /v1/tenant/{tenant}/branch", auth.Tenant, func(w http.ResponseWriter, r *http.Request) {
		t, ok := s.httpTenant(w, r)
		if !ok {
			return
		}
		infos, err := s.branchInfos(r.Context(), t)
		if err != nil {
			writeError(w, err)
			return
		}
		if infos == nil {
			infos = []api.BranchInfo{}
		}
		auth.WriteJSON(w, http.StatusOK, infos)
	})
	mux.HandleFunc("POST /v1/tenant/{tenant}/branch", auth.Tenant, func(w http.ResponseWriter, r *http.Request) {
		t, ok := s.httpTenant(w, r)
		if !ok {
			return
		}
		var req struct {
			Name  string `json:"name"`
			Start string `json:"start"`
		}
		if !readJSON(w, r, &req) {
			return
		}
		if err := api.CheckBranchName(req.Name); err != nil {
			writeError(w, &pgwire.Error{Code: pgwire.CodeInvalidParameterValue, Message: err.Error()})
			return
		}
		start, err := api.ParseStartPoint(req.Start)
		if err != nil {
			writeError(w, &pgwire.Error{Code: pgwire.CodeInvalidParameterValue, Message: err.Error()})
			return
		}
		info, err := s.createBranch(r.Context(), t, req.Name, start)
		if err != nil {
			writeError(w, err)
			return
		}
		auth.WriteJSON(w, http.StatusCreated, info)
	})
	mux.HandleFunc("GET /v1/tenant/{tenant}/config", auth.Tenant, func(w http.ResponseWriter, r *http.Request) {
		if t, ok := s.httpTenant(w, r); ok {
			auth.WriteJSON(w, http.StatusOK, tenantSettings(t.tn.Config()))
		}
	})
	mux.HandleFunc("PUT /v1/tenant/{tenant}/config", auth.Admin, s.httpSetTenantConfig)
	mux.HandleFunc("POST /v1/tenant/{tenant}/gc", auth.Admin, func(w http.ResponseWriter, r *http.Request) {
		t, ok := s.httpTenant(w, r)
		if !ok {
			return
		}
		err := t.gc(r.Context())
		var infos []api.BranchInfo
		if err == nil {
			infos, err = s.branchInfos(r.Context(), t)
		}
		if err != nil {
			writeError(w, err)
			return
		}
		auth.WriteJSON(w, http.StatusOK, infos)
	})
	mux.HandleFunc("POST /v1/tenant/{tenant}/attach", auth.Admin, s.httpAttach)
	mux.HandleFunc("POST /v1/tenant/{tenant}/detach", auth.Admin, func(w http.ResponseWriter, r *http.Request) {
		t, ok := s.httpTenant(w, r)
		if !ok {
			return
		}
		if err := s.tenants.detach(r.Context(), t.id); err != nil {
			writeError(w, err)
			return
		}
		auth.WriteJSON(w, http.StatusOK, tenantJSON{t.id})
	})
	mux.HandleFunc("DELETE /v1/tenant/{tenant}", auth.Admin, func(w http.ResponseWriter, r *http.Request) {
		t, ok := s.httpTenant(w, r)
		if !ok {
			return
		}
		if err := s.tenants.delete(t.id); err != nil {
			writeError(w, err)
			return
		}
		auth.WriteJSON(w, http.StatusOK, tenantJSON{t.id})
	})
	mux.HandleFunc("DELETE /v1/tenant/{tenant}/branch/{branch}", auth.Tenant, func(w http.ResponseWriter, r *http.Request) {
		t, ok := s.httpTenant(w, r)
		if !ok {
			return
		}
		ref := r.PathValue("branch")
		if err := api.CheckTimelineRef(ref); err != nil {
			writeError(w, &pgwire.Error{Code: pgwire.CodeInvalidParameterValue, Message: err.Error()})
			return
		}
		tid, err := t.deleteBranch(ref)
		if err != nil {
			writeError(w, err)
			return
		}
		auth.WriteJSON(w, http.StatusOK, map[string]id.TimelineID{"timeline_id": tid})
	})
	mux.HandleFunc("PUT /v1/tenant/{tenant}/timeline/{timeline}/safekeepers", auth.Admin, s.httpSetSafekeepers)
	mux.Handle("GET /metrics", auth.Public, promhttp.HandlerFor(s.metrics.reg, promhttp.HandlerOpts{}))
	auth.HandlePprof(mux)
}

type tenantJSON struct {
	TenantID id.TenantID `json:"tenant_id"`
}

// TimelineInfo describes a timeline for the HTTP API.
type TimelineInfo struct {
	Timeline          id.TimelineID   `json:"timeline_id"`
	Branch            string          `json:"branch"`
	AncestorTimeline  string          `json:"ancestor_timeline_id"`
	AncestorLSN       api.OptionalLSN `json:"ancestor_lsn"`
	LastRecordLSN     pgdata.LSN      `json:"last_record_lsn"`
	PrevRecordLSN     api.OptionalLSN `json:"prev_record_lsn"`
	DiskConsistentLSN pgdata.LSN      `json:"disk_consistent_lsn"`
	// RemoteConsistentLSN is the LSN up to which the timeline is in
	// remote storage (0: nothing uploaded yet, or no remote storage).
	RemoteConsistentLSN pgdata.LSN `json:"remote_consistent_lsn"`
	GCCutoffLSN         pgdata.LSN `json:"gc_cutoff_lsn"`
	// IngestStopped is set when the timeline's ingest stopped: where and
	// why (see WalReceiver).
	IngestStopped *IngestStop `json:"ingest_stopped,omitempty"`
	// WALReceiver is nil for a timeline that takes no WAL.
	WALReceiver *walStatus `json:"wal_receiver"`
}

func (s *Server) timelineInfo(t *tenant, tid id.TimelineID) (TimelineInfo, error) {
	tl, err := t.tn.Timeline(tid)
	if err != nil {
		return TimelineInfo{}, err
	}
	ti := TimelineInfo{
		Timeline: tid, LastRecordLSN: tl.LastRecordLSN(), PrevRecordLSN: api.OptionalLSN(tl.PrevRecordLSN()),
		DiskConsistentLSN: tl.DiskConsistentLSN(), RemoteConsistentLSN: tl.RemoteConsistentLSN(), GCCutoffLSN: tl.GCCutoff(),
	}
	if b, ok := t.branchOf(tid); ok {
		ti.Branch = b.Name
	}
	if stop := tl.IngestStopped(); stop != nil {
		ti.IngestStopped = &IngestStop{LSN: stop.LSN, Reason: stop.Reason, Message: stop.Error()}
	}
	if a, at := tl.Ancestor(); !a.IsZero() {
		ti.AncestorTimeline, ti.AncestorLSN = a.String(), api.OptionalLSN(at)
	}
	if w := t.walOf(tid); w != nil {
		st := w.Status()
		ti.WALReceiver = &st
	}
	return ti, nil
}

// IngestStop says where a timeline's ingest stopped (the end of the last
// record ingested) and why; Message is both in one sentence.
type IngestStop struct {
	LSN     pgdata.LSN `json:"lsn"`
	Reason  string     `json:"reason"`
	Message string     `json:"message"`
}

// httpSetSafekeepers makes a timeline (branch name or id) stream its WAL
// from a set of safekeepers, as the page service's safekeepers command
// does, and answers the timeline's TimelineInfo.
func (s *Server) httpSetSafekeepers(w http.ResponseWriter, r *http.Request) {
	t, ok := s.httpTenant(w, r)
	if !ok {
		return
	}
	var req struct {
		Safekeepers []string `json:"safekeepers"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	ref := r.PathValue("timeline")
	err := api.CheckTimelineRef(ref)
	if err == nil {
		err = api.CheckSafekeeperAddrs(req.Safekeepers)
	}
	if err != nil {
		writeError(w, &pgwire.Error{Code: pgwire.CodeInvalidParameterValue, Message: err.Error()})
		return
	}
	tl, err := t.timeline(ref)
	if err != nil {
		writeError(w, err)
		return
	}
	wal, err := timelineWALOf(t, tl)
	if err == nil {
		err = wal.SetSafekeepers(t.id, req.Safekeepers)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	info, err := s.timelineInfo(t, tl.ID())
	if err != nil {
		writeError(w, err)
		return
	}
	auth.WriteJSON(w, http.StatusOK, info)
}

// httpSetTenantConfig changes a tenant's retention, as the page service's
// tenant_config does, and answers its settings.
func (s *Server) httpSetTenantConfig(w http.ResponseWriter, r *http.Request) {
	t, ok := s.httpTenant(w, r)
	if !ok {
		return
	}
	var req struct {
		GCHorizon    *int64  `json:"gc_horizon"`
		PITRInterval *string `json:"pitr_interval"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	var change api.RetentionChange
	var args []string
	if req.GCHorizon != nil {
		args = append(args, fmt.Sprintf("%s=%d", api.SettingGCHorizon, *req.GCHorizon))
	}
	if req.PITRInterval != nil {
		args = append(args, api.SettingPITRInterval+"="+*req.PITRInterval)
	}
	for _, a := range args {
		if err := change.ParseArg(a); err != nil {
			writeError(w, &pgwire.Error{Code: pgwire.CodeInvalidParameterValue, Message: err.Error()})
			return
		}
	}
	settings, err := t.configure(change)
	if err != nil {
		writeError(w, err)
		return
	}
	auth.WriteJSON(w, http.StatusOK, settings)
}

// httpAttach attaches the tenant of the path at the request's generation,
// as the page service's tenant_attach does.
func (s *Server) httpAttach(w http.ResponseWriter, r *http.Request) {
	tid, err := id.ParseTenantID(r.PathValue("tenant"))
	if err != nil {
		writeError(w, &pgwire.Error{Code: pgwire.CodeInvalidParameterValue, Message: err.Error()})
		return
	}
	var req struct {
		Generation repo.Generation `json:"generation"`
	}
	if !readJSON(w, r, &req) {
		return
	}
	if req.Generation == 0 {
		writeError(w, &pgwire.Error{Code: pgwire.CodeInvalidParameterValue, Message: repo.ErrInvalidGeneration.Error()})
		return
	}
	t, err := s.tenants.attach(r.Context(), tid, req.Generation)
	if err != nil {
		writeError(w, err)
		return
	}
	auth.WriteJSON(w, http.StatusOK, struct {
		TenantID   id.TenantID     `json:"tenant_id"`
		Generation repo.Generation `json:"generation"`
		Timelines  int             `json:"timelines"`
	}{t.id, t.tn.Generation(), len(t.tn.Timelines())})
}

// httpTenant resolves the {tenant} of the request's path, answering the
// request itself if it cannot.
func (s *Server) httpTenant(w http.ResponseWriter, r *http.Request) (*tenant, bool) {
	tid, err := id.ParseTenantID(r.PathValue("tenant"))
	if err != nil {
		writeError(w, &pgwire.Error{Code: pgwire.CodeInvalidParameterValue, Message: err.Error()})
		return nil, false
	}
	t, err := s.tenants.get(tid)
	if err != nil {
		writeError(w, err)
		return nil, false
	}
	return t, true
}

// readJSON decodes a request's JSON body strictly (unknown fields are
// errors), answering the request itself if it cannot.
func readJSON(w http.ResponseWriter, r *http.Request, v any) bool {
	dec := json.NewDecoder(io.LimitReader(r.Body, maxRequestBody))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil && !errors.Is(err, io.EOF) {
		writeError(w, &pgwire.Error{Code: pgwire.CodeInvalidParameterValue, Message: fmt.Sprintf("request body: %v", err)})
		return false
	}
	return true
}

// writeError answers with the error's SQLSTATE and its HTTP status.
func writeError(w http.ResponseWriter, err error) {
	code, msg := pgwire.CodeInternalError, err.Error()
	var pe *pgwire.Error
	if errors.As(pageservice.SQLError(err), &pe) {
		code, msg = pe.Code, pe.Message
	}
	auth.WriteJSON(w, httpStatus(code), map[string]string{"error": msg, "code": code})
}

// httpStatus maps a SQLSTATE to an HTTP status.
func httpStatus(code string) int {
	switch code {
	case pgwire.CodeSyntaxError, pgwire.CodeInvalidParameterValue:
		return http.StatusBadRequest
	case pgwire.CodeUndefinedObject:
		return http.StatusNotFound
	case pgwire.CodeDuplicateObject, pgwire.CodeObjectNotInPrereqState, pgwire.CodeDependentObjects:
		return http.StatusConflict
	case pgwire.CodeQueryCanceled:
		return http.StatusGatewayTimeout
	}
	return http.StatusInternalServerError
}
