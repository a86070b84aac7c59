package pageserver

import (
	"time"

	"github.com/zenithdb/zenith/pageserver/api"
	"github.com/zenithdb/zenith/pageserver/httpapi"
	"github.com/zenithdb/zenith/repo/id"
)

// What the HTTP API asks of the tenant manager beyond what the page
// service does (httpapi.Tenants); serverTenants implements it on *Server.
var _ httpapi.Tenants = serverTenants{}

func (st serverTenants) StatusJSON() any { return st.s.status() }

func (st serverTenants) CheckTenant(tid id.TenantID) error {
	_, err := st.s.tenants.get(tid)
	return err
}

func (st serverTenants) Settings(tid id.TenantID) ([]api.TenantSetting, error) {
	t, err := st.s.tenants.get(tid)
	if err != nil {
		return nil, err
	}
	return tenantSettings(t.tn.Config()), nil
}

func (st serverTenants) Timelines(tid id.TenantID) ([]httpapi.TimelineInfo, error) {
	t, err := st.s.tenants.get(tid)
	if err != nil {
		return nil, err
	}
	out := []httpapi.TimelineInfo{}
	for _, info := range t.tn.Timelines() {
		ti, err := timelineInfo(t, info.ID)
		if err != nil {
			return nil, err
		}
		out = append(out, ti)
	}
	return out, nil
}

func (st serverTenants) TimelineInfo(tid id.TenantID, tl id.TimelineID) (httpapi.TimelineInfo, error) {
	t, err := st.s.tenants.get(tid)
	if err != nil {
		return httpapi.TimelineInfo{}, err
	}
	return timelineInfo(t, tl)
}

// timelineInfo describes timeline tid of tenant t.
func timelineInfo(t *tenant, tid id.TimelineID) (httpapi.TimelineInfo, error) {
	tl, err := t.tn.Timeline(tid)
	if err != nil {
		return httpapi.TimelineInfo{}, err
	}
	ti := httpapi.TimelineInfo{
		Timeline: tid, LastRecordLSN: tl.LastRecordLSN(), PrevRecordLSN: api.OptionalLSN(tl.PrevRecordLSN()),
		DiskConsistentLSN: tl.DiskConsistentLSN(), RemoteConsistentLSN: tl.RemoteConsistentLSN(), GCCutoffLSN: tl.GCCutoff(),
	}
	if b, ok := t.branchOf(tid); ok {
		ti.Branch = b.Name
	}
	if stop := tl.IngestStopped(); stop != nil {
		ti.IngestStopped = &httpapi.IngestStop{LSN: stop.LSN, Reason: stop.Reason, Message: stop.Error()}
	}
	if a, at := tl.Ancestor(); !a.IsZero() {
		ti.AncestorTimeline, ti.AncestorLSN = a.String(), api.OptionalLSN(at)
	}
	w := t.walOf(tid)
	if w != nil {
		st := w.Status()
		ti.WALReceiver = &st
	}
	if op, since := timelineStall(tl, w, time.Now(), t.ts.stallThreshold); op != "" {
		ti.Stalled = &httpapi.Stall{Operation: op, Since: since}
	}
	return ti, nil
}

// httpAPIConfig is the server's HTTP API as newHTTPAPI makes it.
func (s *Server) httpAPIConfig() httpapi.Config {
	return httpapi.Config{Tenants: serverTenants{s}, Verifier: s.verifier, Metrics: s.metrics.reg}
}
