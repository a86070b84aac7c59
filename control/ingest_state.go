package control

import (
	"context"
	"fmt"
	"io"
	"slices"
	"strings"

	"github.com/zenithdb/zenith/pageserver/api"
	"github.com/zenithdb/zenith/repo/id"
)

// IngestStop is a branch whose WAL ingest stopped on the page server: its
// WAL is still received and kept (commits go on), but nothing after the
// point where ingest stopped can be read, so no compute can start at the
// branch's end until the page server is restarted with the cause fixed.
type IngestStop struct {
	Tenant id.TenantID `json:"tenant"`
	Branch string      `json:"branch"`
	// Message is the page server's "ingest of timeline T stopped at LSN
	// X: reason".
	Message string `json:"message"`
}

// ingestStopAdvice is what to do about a stopped ingest.
const ingestStopAdvice = "the page server keeps the WAL: restart it once the cause is fixed (zenith stop; zenith start) and ingest resumes; its log says more"

// errIngestStopped is the error of an operation that needs branch b's
// latest state while its ingest is stopped.
func errIngestStopped(b api.BranchInfo) error {
	return fmt.Errorf("branch %s: %s; %s", b.Name, b.IngestStopped, ingestStopAdvice)
}

// ingestStops asks the page server for the branches of tenants (every
// tenant when nil) whose ingest stopped.
func (e *Env) ingestStops(ctx context.Context, tenants []id.TenantID) ([]IngestStop, error) {
	ps := e.Pageserver()
	if tenants == nil {
		var err error
		if tenants, err = ps.TenantList(ctx); err != nil {
			return nil, err
		}
	}
	var out []IngestStop
	for _, t := range tenants {
		branches, err := ps.BranchList(ctx, t)
		if err != nil {
			return nil, err
		}
		for _, b := range branches {
			if b.IngestStopped != "" {
				out = append(out, IngestStop{Tenant: t, Branch: b.Name, Message: b.IngestStopped})
			}
		}
	}
	return out, nil
}

// nodeTenants returns the distinct tenants of rows.
func nodeTenants(rows []nodeRow) []id.TenantID {
	var out []id.TenantID
	for _, r := range rows {
		if !slices.Contains(out, r.Tenant) {
			out = append(out, r.Tenant)
		}
	}
	return out
}

// markIngestStops sets the IngestStopped of the rows whose branch is in
// stops.
func markIngestStops(rows []nodeRow, stops []IngestStop) {
	for i := range rows {
		for _, s := range stops {
			if rows[i].Tenant == s.Tenant && rows[i].Branch == s.Branch {
				rows[i].IngestStopped = s.Message
			}
		}
	}
}

// printIngestStops prints one line per stopped branch.
func printIngestStops(w io.Writer, stops []IngestStop) {
	for _, s := range stops {
		fmt.Fprintf(w, "branch %s of tenant %s: %s\n", s.Branch, s.Tenant, strings.TrimSpace(s.Message))
	}
	if len(stops) > 0 {
		fmt.Fprintln(w, ingestStopAdvice)
	}
}
