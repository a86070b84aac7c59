package walreceiver

import (
	"slices"
	"testing"

	"github.com/zenithdb/zenith/repo/id"
)

// TestWALStoreSafekeepers: the store keeps the set of safekeepers across
// a reopen, and a source connection string and a set replace each other.
func TestWALStoreSafekeepers(t *testing.T) {
	dir := t.TempDir()
	s := openTestStore(t, dir)
	set := &SafekeeperSet{Tenant: id.NewTenantID(), Addrs: []string{"a:1", "b:2"}}
	if err := s.SetSource("host=x"); err != nil {
		t.Fatal(err)
	}
	if err := s.SetSafekeepers(set); err != nil {
		t.Fatal(err)
	}
	set.Addrs[0] = "changed:1" // the store keeps its own copy
	s.Close()
	s = openTestStore(t, dir)
	got := s.Safekeepers()
	if got == nil || got.Tenant != set.Tenant || !slices.Equal(got.Addrs, []string{"a:1", "b:2"}) || s.Source() != "" {
		t.Errorf("reopened store: safekeepers %+v, source %q; want %v of tenant %s and no source", got, s.Source(), []string{"a:1", "b:2"}, set.Tenant)
	}
	if err := s.SetSource("host=y"); err != nil {
		t.Fatal(err)
	}
	if got := s.Safekeepers(); got != nil || s.Source() != "host=y" {
		t.Errorf("after SetSource: safekeepers %+v, source %q; want none and host=y", got, s.Source())
	}
}
