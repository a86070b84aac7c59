// Package httpapi is the page server's HTTP API: the page service's
// management commands as JSON, and the Prometheus metrics. API's routes
// (Routes, served by Server):
//
//	GET  /v1/status                      the server's status (Tenants.StatusJSON)
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
// /metrics needs "Authorization: Bearer <token>" (see Routes for which
// scope): a missing, malformed, expired or foreign token is 401 (code
// 28P01), a token whose scope does not reach the route 403 (28000).
//
// It holds no tenant of its own: what it knows of tenants, branches and
// timelines it asks of a Tenants (pageservice.Tenants and what only HTTP
// asks), which package pageserver implements on its tenant manager. An
// error's SQLSTATE is pageservice.SQLError's, as on libpq, so that one
// error has one code on both; httpStatus maps it to an HTTP status.
//
// What it must never do: answer for a tenant or a timeline it did not
// ask the Tenants of, or answer an error with a status its SQLSTATE does
// not map to.
package httpapi
