package control

import (
	"maps"
	"os"
	"path/filepath"
	"testing"
)

// TestTablespaceMap: tablespace_map as PostgreSQL writes it (a backslash,
// newline or carriage return of a location escaped with a backslash; a
// space is not) reads back; what writeTablespaceMap writes reads back the
// same; bad lines are refused; no file is no tablespaces.
func TestTablespaceMap(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "tablespace_map")
	if got, err := readTablespaceMap(p); err != nil || len(got) != 0 {
		t.Fatalf("no tablespace_map: %v, %v; want none", got, err)
	}
	written := "16384 /srv/ts one\n16390 /srv/a\\\\b\\\nc\n"
	want := map[uint32]string{16384: "/srv/ts one", 16390: "/srv/a\\b\nc"}
	if err := os.WriteFile(p, []byte(written), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := readTablespaceMap(p)
	if err != nil || !maps.Equal(got, want) {
		t.Fatalf("readTablespaceMap(%q) = %q, %v; want %q", written, got, err, want)
	}
	if err := writeTablespaceMap(p, want); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(p); string(b) != written {
		t.Errorf("writeTablespaceMap wrote %q, want %q", b, written)
	}
	for _, bad := range []string{"x /srv/ts\n", "0 /srv/ts\n", "16384 relative\n", "16384\n", "16384 /srv/ts"} {
		if err := os.WriteFile(p, []byte(bad), 0o600); err != nil {
			t.Fatal(err)
		}
		if got, err := readTablespaceMap(p); err == nil {
			t.Errorf("readTablespaceMap(%q) = %q, want an error", bad, got)
		}
	}
}
