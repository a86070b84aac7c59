package pageserver

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/zenithdb/zenith/repo/id"
)

// TestBranchAndTenantDelete deletes branches and a tenant through the page
// service and the HTTP API: a branch with children is refused naming
// them, a deleted branch is gone with its files, its parent still serves
// a basebackup.
func TestBranchAndTenantDelete(t *testing.T) {
	ts := startPageServer(t)
	conn := ts.connect(t)
	tenant := id.NewTenantID()
	rows(t, conn, "tenant_create "+tenant.String())
	if err := importDataDir(conn, tenant, "main", initdbDir(t), nil); err != nil {
		t.Fatalf("import: %v", err)
	}
	dev := rows(t, conn, fmt.Sprintf("branch_create %s dev main", tenant))[0]
	rows(t, conn, fmt.Sprintf("branch_create %s feature dev", tenant))
	tenantDir := filepath.Join(ts.srv.dir, "tenants", tenant.String())
	devDir := filepath.Join(tenantDir, "timelines", dev["timeline_id"])
	if _, err := os.Stat(devDir); err != nil {
		t.Fatal(err)
	}

	_, err := queryRows(conn, fmt.Sprintf("branch_delete %s dev", tenant))
	wantSQLState(t, "branch_delete of a branch with a child", err, "2BP01")
	if err == nil || !strings.Contains(err.Error(), "feature") {
		t.Errorf("the refusal %v does not name the child branch feature", err)
	}
	_, err = queryRows(conn, fmt.Sprintf("branch_delete %s nosuch", tenant))
	wantSQLState(t, "branch_delete of an unknown branch", err, "42704")

	if got := rows(t, conn, fmt.Sprintf("branch_delete %s feature", tenant)); len(got) != 1 {
		t.Errorf("branch_delete feature answered %v", got)
	}
	// Through HTTP, by timeline id.
	req, _ := http.NewRequest(http.MethodDelete, "http://"+ts.httpAddr+"/v1/tenant/"+tenant.String()+"/branch/"+dev["timeline_id"], nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	var body map[string]string
	_ = json.NewDecoder(resp.Body).Decode(&body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || body["timeline_id"] != dev["timeline_id"] {
		t.Errorf("DELETE branch/%s: %d %v", dev["timeline_id"], resp.StatusCode, body)
	}
	branches := rows(t, conn, "branch_list "+tenant.String())
	if len(branches) != 1 || branches[0]["name"] != "main" {
		t.Errorf("branches after the deletes: %v, want main alone", branches)
	}
	if _, err := os.Stat(devDir); !os.IsNotExist(err) {
		t.Errorf("dev's timeline directory after its delete: %v", err)
	}
	if _, err := os.Stat(filepath.Join(tenantDir, "wal", dev["timeline_id"])); !os.IsNotExist(err) {
		t.Errorf("dev's WAL directory after its delete: %v", err)
	}
	if _, err := conn.PgConn().CopyTo(context.Background(), io.Discard, fmt.Sprintf("basebackup %s main", tenant)); err != nil {
		t.Errorf("basebackup of main after its children were deleted: %v", err)
	}

	// The tenant.
	rows(t, conn, "tenant_delete "+tenant.String())
	if _, err := os.Stat(tenantDir); !os.IsNotExist(err) {
		t.Errorf("tenant directory after tenant_delete: %v", err)
	}
	_, err = queryRows(conn, "branch_list "+tenant.String())
	wantSQLState(t, "branch_list of a deleted tenant", err, "42704")
	_, err = queryRows(conn, "tenant_delete "+tenant.String())
	wantSQLState(t, "tenant_delete of a deleted tenant", err, "42704")
}
