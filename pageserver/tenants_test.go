package pageserver

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/zenithdb/zenith/repo/id"
)

func TestBranchesFile(t *testing.T) {
	dir := t.TempDir()
	if got, err := loadBranches(dir); err != nil || got != nil {
		t.Fatalf("no file: %v, %v; want no branches", got, err)
	}
	tl := id.NewTimelineID()
	want := []Branch{{Name: "main", Timeline: tl, Start: 0x16B3748}, {Name: "dev", Timeline: id.NewTimelineID(), Start: 0x16B3800}}
	if err := saveBranches(dir, want); err != nil {
		t.Fatal(err)
	}
	got, err := loadBranches(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got[0] != want[1] || got[1] != want[0] {
		t.Errorf("loaded %+v, want %+v sorted by name", got, want)
	}
	for name, body := range map[string]string{
		"not JSON":      "{",
		"unknown field": `{"branches":[],"extra":1}`,
		"bad name":      `{"branches":[{"name":"a b","timeline_id":"` + tl.String() + `","start_lsn":"0/1"}]}`,
		"duplicate":     `{"branches":[{"name":"a","timeline_id":"` + tl.String() + `","start_lsn":"0/1"},{"name":"a","timeline_id":"` + tl.String() + `","start_lsn":"0/1"}]}`,
		"bad id":        `{"branches":[{"name":"a","timeline_id":"xyz","start_lsn":"0/1"}]}`,
		"bad LSN":       `{"branches":[{"name":"a","timeline_id":"` + tl.String() + `","start_lsn":"1"}]}`,
	} {
		if err := os.WriteFile(filepath.Join(dir, branchesFileName), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if _, err := loadBranches(dir); err == nil {
			t.Errorf("%s: loaded without an error", name)
		}
	}
}
