package httpapi

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
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

// Tenants is the tenant manager as the HTTP API sees it: what the
// page service asks of it, and what only the HTTP API answers.
type Tenants interface {
	pageservice.Tenants
	// StatusJSON is the server's status, the body of GET /v1/status (a
	// value encoding/json marshals).
	StatusJSON() any
	// CheckTenant fails (repo.ErrTenantNotFound) unless tenant tid is
	// served.
	CheckTenant(tid id.TenantID) error
	// Settings returns every setting of tenant tid.
	Settings(tid id.TenantID) ([]api.TenantSetting, error)
	// Timelines describes every timeline of tenant tid.
	Timelines(tid id.TenantID) ([]TimelineInfo, error)
	// TimelineInfo describes timeline tl of tenant tid.
	TimelineInfo(tid id.TenantID, tl id.TimelineID) (TimelineInfo, error)
}

// Config is what the HTTP API is made of.
type Config struct {
	// Tenants is the tenant manager.
	Tenants Tenants
	// Verifier checks tokens; nil when auth is off.
	Verifier *auth.Verifier
	// Metrics gathers what GET /metrics answers.
	Metrics prometheus.Gatherer
}

// API is the page server's HTTP API.
type API struct {
	tenants  Tenants
	verifier *auth.Verifier
	metrics  prometheus.Gatherer
}

// New returns the HTTP API of cfg.
func New(cfg Config) *API {
	return &API{tenants: cfg.Tenants, verifier: cfg.Verifier, metrics: cfg.Metrics}
}

// Server is the HTTP API's http.Server, its routes behind the verifier.
func (a *API) Server() *http.Server {
	mux := auth.NewMux(a.verifier)
	a.Routes(mux)
	return &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 10 * time.Second,
	}
}

// Routes registers every route of the HTTP API on mux, each with what it
// needs of a token when auth is on: /v1/status and /metrics are public
// (health checks and scraping), a tenant's routes need a token for it,
// the rest an admin token.
func (a *API) Routes(mux *auth.Mux) {
	mux.HandleFunc("GET /v1/status", auth.Public, func(w http.ResponseWriter, r *http.Request) {
		auth.WriteJSON(w, http.StatusOK, a.tenants.StatusJSON())
	})
	mux.HandleFunc("GET /v1/tenant", auth.Admin, func(w http.ResponseWriter, r *http.Request) {
		out := []tenantJSON{}
		for _, tid := range a.tenants.ListTenants() {
			out = append(out, tenantJSON{tid})
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
		created, err := a.tenants.CreateTenant(r.Context(), tid, req.Generation)
		if err != nil {
			writeError(w, err)
			return
		}
		auth.WriteJSON(w, http.StatusCreated, tenantJSON{created})
	})
	mux.HandleFunc("GET /v1/tenant/{tenant}/timeline", auth.Tenant, func(w http.ResponseWriter, r *http.Request) {
		tid, ok := a.tenant(w, r)
		if !ok {
			return
		}
		out, err := a.tenants.Timelines(tid)
		if err != nil {
			writeError(w, err)
			return
		}
		if out == nil {
			out = []TimelineInfo{}
		}
		auth.WriteJSON(w, http.StatusOK, out)
	})
	mux.HandleFunc("GET /v1/tenant/{tenant}/branch", auth.Tenant, func(w http.ResponseWriter, r *http.Request) {
		tid, ok := a.tenant(w, r)
		if !ok {
			return
		}
		infos, err := a.tenants.Branches(r.Context(), tid)
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
		tid, ok := a.tenant(w, r)
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
		info, err := a.tenants.CreateBranch(r.Context(), tid, req.Name, start)
		if err != nil {
			writeError(w, err)
			return
		}
		auth.WriteJSON(w, http.StatusCreated, info)
	})
	mux.HandleFunc("GET /v1/tenant/{tenant}/config", auth.Tenant, func(w http.ResponseWriter, r *http.Request) {
		tid, ok := a.tenant(w, r)
		if !ok {
			return
		}
		settings, err := a.tenants.Settings(tid)
		if err != nil {
			writeError(w, err)
			return
		}
		auth.WriteJSON(w, http.StatusOK, settings)
	})
	mux.HandleFunc("PUT /v1/tenant/{tenant}/config", auth.Admin, a.setTenantConfig)
	mux.HandleFunc("POST /v1/tenant/{tenant}/gc", auth.Admin, func(w http.ResponseWriter, r *http.Request) {
		tid, ok := a.tenant(w, r)
		if !ok {
			return
		}
		err := a.tenants.GC(r.Context(), tid)
		var infos []api.BranchInfo
		if err == nil {
			infos, err = a.tenants.Branches(r.Context(), tid)
		}
		if err != nil {
			writeError(w, err)
			return
		}
		auth.WriteJSON(w, http.StatusOK, infos)
	})
	mux.HandleFunc("POST /v1/tenant/{tenant}/attach", auth.Admin, a.attach)
	mux.HandleFunc("POST /v1/tenant/{tenant}/detach", auth.Admin, func(w http.ResponseWriter, r *http.Request) {
		tid, ok := a.tenant(w, r)
		if !ok {
			return
		}
		if err := a.tenants.DetachTenant(r.Context(), tid); err != nil {
			writeError(w, err)
			return
		}
		auth.WriteJSON(w, http.StatusOK, tenantJSON{tid})
	})
	mux.HandleFunc("DELETE /v1/tenant/{tenant}", auth.Admin, func(w http.ResponseWriter, r *http.Request) {
		tid, ok := a.tenant(w, r)
		if !ok {
			return
		}
		if err := a.tenants.DeleteTenant(tid); err != nil {
			writeError(w, err)
			return
		}
		auth.WriteJSON(w, http.StatusOK, tenantJSON{tid})
	})
	mux.HandleFunc("DELETE /v1/tenant/{tenant}/branch/{branch}", auth.Tenant, func(w http.ResponseWriter, r *http.Request) {
		tid, ok := a.tenant(w, r)
		if !ok {
			return
		}
		ref := r.PathValue("branch")
		if err := api.CheckTimelineRef(ref); err != nil {
			writeError(w, &pgwire.Error{Code: pgwire.CodeInvalidParameterValue, Message: err.Error()})
			return
		}
		tlid, err := a.tenants.DeleteBranch(tid, ref)
		if err != nil {
			writeError(w, err)
			return
		}
		auth.WriteJSON(w, http.StatusOK, map[string]id.TimelineID{"timeline_id": tlid})
	})
	mux.HandleFunc("PUT /v1/tenant/{tenant}/timeline/{timeline}/safekeepers", auth.Admin, a.setSafekeepers)
	mux.Handle("GET /metrics", auth.Public, promhttp.HandlerFor(a.metrics, promhttp.HandlerOpts{}))
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
	WALReceiver *api.WALStatus `json:"wal_receiver"`
	// Stalled is set while a write of the timeline (a step of its layer
	// flush, its WAL store's write or fsync) has been in progress for
	// longer than the page server's stall_threshold.
	Stalled *Stall `json:"stalled,omitempty"`
}

// Stall is a write to disk that has not returned for a long time: which
// one, and since when.
type Stall struct {
	Operation string    `json:"operation"`
	Since     time.Time `json:"since"`
}

// IngestStop says where a timeline's ingest stopped (the end of the last
// record ingested) and why; Message is both in one sentence.
type IngestStop struct {
	LSN     pgdata.LSN `json:"lsn"`
	Reason  string     `json:"reason"`
	Message string     `json:"message"`
}

// setSafekeepers makes a timeline (branch name or id) stream its WAL
// from a set of safekeepers, as the page service's safekeepers command
// does, and answers the timeline's TimelineInfo.
func (a *API) setSafekeepers(w http.ResponseWriter, r *http.Request) {
	tid, ok := a.tenant(w, r)
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
	tl, err := a.tenants.Timeline(tid, ref)
	if err != nil {
		writeError(w, err)
		return
	}
	wal, err := a.tenants.WAL(tid, ref)
	if err == nil {
		err = wal.SetSafekeepers(tid, req.Safekeepers)
	}
	if err != nil {
		writeError(w, err)
		return
	}
	info, err := a.tenants.TimelineInfo(tid, tl.ID())
	if err != nil {
		writeError(w, err)
		return
	}
	auth.WriteJSON(w, http.StatusOK, info)
}

// setTenantConfig changes a tenant's retention, as the page service's
// tenant_config does, and answers its settings.
func (a *API) setTenantConfig(w http.ResponseWriter, r *http.Request) {
	tid, ok := a.tenant(w, r)
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
	for _, arg := range args {
		if err := change.ParseArg(arg); err != nil {
			writeError(w, &pgwire.Error{Code: pgwire.CodeInvalidParameterValue, Message: err.Error()})
			return
		}
	}
	settings, err := a.tenants.Configure(tid, change)
	if err != nil {
		writeError(w, err)
		return
	}
	auth.WriteJSON(w, http.StatusOK, settings)
}

// attach attaches the tenant of the path at the request's generation,
// as the page service's tenant_attach does.
func (a *API) attach(w http.ResponseWriter, r *http.Request) {
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
	t, err := a.tenants.AttachTenant(r.Context(), tid, req.Generation)
	if err != nil {
		writeError(w, err)
		return
	}
	auth.WriteJSON(w, http.StatusOK, struct {
		TenantID   id.TenantID     `json:"tenant_id"`
		Generation repo.Generation `json:"generation"`
		Timelines  int             `json:"timelines"`
	}{t.ID, t.Generation, t.Timelines})
}

// tenant resolves the {tenant} of the request's path to a tenant served,
// answering the request itself if it cannot.
func (a *API) tenant(w http.ResponseWriter, r *http.Request) (id.TenantID, bool) {
	tid, err := id.ParseTenantID(r.PathValue("tenant"))
	if err != nil {
		writeError(w, &pgwire.Error{Code: pgwire.CodeInvalidParameterValue, Message: err.Error()})
		return id.TenantID{}, false
	}
	if err := a.tenants.CheckTenant(tid); err != nil {
		writeError(w, err)
		return id.TenantID{}, false
	}
	return tid, true
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
