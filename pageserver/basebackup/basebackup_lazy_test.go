package basebackup

import (
	"bytes"
	"io/fs"
	"os"
	"path/filepath"
	"testing"

	"github.com/zenithdb/zenith/pageserver/api"
	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// checkLazyBasebackup takes a lazy basebackup of tl at lsn and compares
// it with eagerDir, the data directory of the eager one: every file
// that is not a logged relation's is there byte for byte, and every
// logged relation file is absent and listed in the manifest with its
// size, at lsn.
func checkLazyBasebackup(t *testing.T, tl *repo.Timeline, lsn pgdata.LSN, eagerDir string) {
	t.Helper()
	dir := t.TempDir()
	if err := untar(takeBasebackup(t, tl, lsn, Options{Lazy: true}), dir); err != nil {
		t.Fatal(err)
	}
	text, err := os.ReadFile(filepath.Join(dir, api.LazyManifestName))
	if err != nil {
		t.Fatal(err)
	}
	m, err := api.ParseLazyManifest(text)
	if err != nil {
		t.Fatal(err)
	}
	if m.LSN != lsn || m.RelSegSize != 131072 {
		t.Errorf("manifest at %v with relseg_size %d, want %v and 131072", m.LSN, m.RelSegSize, lsn)
	}
	listed := map[string]int64{}
	for _, f := range m.Files {
		listed[f.Path] = f.Size
	}
	seen := 0
	err = filepath.WalkDir(eagerDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		rel, _ := filepath.Rel(eagerDir, p)
		want, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		got, gerr := os.ReadFile(filepath.Join(dir, rel))
		if size, ok := listed[filepath.ToSlash(rel)]; ok {
			seen++
			if size != int64(len(want)) {
				t.Errorf("manifest: %s has %d bytes, the eager basebackup %d", rel, size, len(want))
			}
			if gerr == nil {
				t.Errorf("%s is both in the lazy tar and in its manifest", rel)
			}
			return nil
		}
		if gerr != nil || !bytes.Equal(got, want) {
			t.Errorf("%s: %d bytes in the lazy tar (%v), want the eager tar's %d", rel, len(got), gerr, len(want))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if seen != len(m.Files) || seen < 100 {
		t.Errorf("manifest lists %d files, %d of them in the eager basebackup; want them all, and the catalog's hundreds", len(m.Files), seen)
	}
}

func TestLazyManifestRoundTrip(t *testing.T) {
	m := &api.LazyManifest{LSN: 0x16B3748, RelSegSize: 131072}
	m.Add(pgdata.RelFileNode{SpcNode: 1663, DbNode: 5, RelNode: 16384}, pgdata.ForkMain, 0, 1<<30)
	m.Add(pgdata.RelFileNode{SpcNode: 1663, DbNode: 5, RelNode: 16384}, pgdata.ForkVM, 1, 8192)
	m.Add(pgdata.RelFileNode{SpcNode: 1664, RelNode: 1262}, pgdata.ForkFSM, 0, 0)
	got, err := api.ParseLazyManifest(m.Encode())
	if err != nil {
		t.Fatal(err)
	}
	if got.LSN != m.LSN || got.RelSegSize != m.RelSegSize || len(got.Files) != len(m.Files) {
		t.Fatalf("round trip: %+v, want %+v", got, m)
	}
	for i := range m.Files {
		if got.Files[i] != m.Files[i] {
			t.Errorf("file %d: %+v, want %+v", i, got.Files[i], m.Files[i])
		}
	}
	for _, bad := range []string{
		"",
		"zenith lazy basebackup 1\nlsn 0/1\n",
		"zenith lazy basebackup 1\nlsn 0/1\nrelseg_size 0\n",
		"zenith lazy basebackup 1\nlsn 0/1\nrelseg_size 8\nbase/5/16384 100\n",
		"zenith lazy basebackup 1\nlsn 0/1\nrelseg_size 8\nbase/5/16384 81920\n",
		"zenith lazy basebackup 1\nlsn 0/1\nrelseg_size 8\npg_xact/0000 8192\n",
	} {
		if _, err := api.ParseLazyManifest([]byte(bad)); err == nil {
			t.Errorf("ParseLazyManifest(%q) accepted it", bad)
		}
	}
}
