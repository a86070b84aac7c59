package control

import (
	"context"
	"strings"
	"testing"

	"github.com/zenithdb/zenith/repo/id"
)

// A branch name of 32 hex digits reads as a timeline id: the page server
// refuses it, so the CLI must refuse it too, before asking the server (the
// two used to have rules of their own; now both use pageserver/api).
func TestCreateBranchRefusesANameThatReadsAsATimelineID(t *testing.T) {
	e := &Env{} // no page server: the name must be refused before one is needed
	_, err := e.CreateBranch(context.Background(), id.NewTenantID(), "0123456789abcdef0123456789abcdef", "main")
	if err == nil || !strings.Contains(err.Error(), "reads as a timeline id") {
		t.Fatalf("CreateBranch with a 32-hex-digit name: %v, want an error saying it reads as a timeline id", err)
	}
}
