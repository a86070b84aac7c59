package api

import (
	"fmt"

	"github.com/zenithdb/zenith/pgwire"
	"github.com/zenithdb/zenith/repo/id"
)

// A replication connection to a walsender of this project (a
// safekeeper's, or the page server's, which serve read replicas) names
// the timeline whose WAL it wants in its startup options, as a stock
// standby's primary_conninfo can: options='-c tenant_id=<id> -c
// timeline_id=<id>'. ReplicationOptions writes them and
// ReplicationTimeline reads them.

// ReplicationOptions is the options startup parameter that names tenant's
// timeline to a walsender (without the quotes a connection string puts
// around it).
func ReplicationOptions(tenant id.TenantID, timeline id.TimelineID) string {
	return fmt.Sprintf("-c tenant_id=%s -c timeline_id=%s", tenant, timeline)
}

// ReplicationTimeline is the tenant and timeline a replication session
// names in its startup parameters (ReplicationOptions, or tenant_id and
// timeline_id parameters themselves); a *pgwire.Error (22023) if it
// names none or a malformed one.
func ReplicationTimeline(params map[string]string) (id.TenantID, id.TimelineID, error) {
	vals := pgwire.StartupOptions(params)
	if vals["tenant_id"] == "" || vals["timeline_id"] == "" {
		return id.TenantID{}, id.TimelineID{}, pgwire.Errorf(pgwire.CodeInvalidParameterValue,
			"a replication connection must name its timeline: options='%s'", ReplicationOptions(id.TenantID{}, id.TimelineID{}))
	}
	tenant, err := id.ParseTenantID(vals["tenant_id"])
	if err != nil {
		return id.TenantID{}, id.TimelineID{}, pgwire.Errorf(pgwire.CodeInvalidParameterValue, "%v", err)
	}
	timeline, err := id.ParseTimelineID(vals["timeline_id"])
	if err != nil {
		return id.TenantID{}, id.TimelineID{}, pgwire.Errorf(pgwire.CodeInvalidParameterValue, "%v", err)
	}
	return tenant, timeline, nil
}
