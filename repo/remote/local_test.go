package remote

import (
	"bytes"
	"context"
	"errors"
	"reflect"
	"strings"
	"testing"

	"github.com/zenithdb/zenith/repo/vfs"
)

func download(t *testing.T, s Storage, p string) (string, error) {
	t.Helper()
	var buf bytes.Buffer
	err := s.Download(context.Background(), p, &buf)
	return buf.String(), err
}

func TestLocalDir(t *testing.T) {
	ctx := context.Background()
	for name, fs := range map[string]vfs.FS{"os": vfs.Default, "mem": vfs.NewMem()} {
		t.Run(name, func(t *testing.T) {
			root := "/remote"
			if name == "os" {
				root = t.TempDir() + "/remote"
			}
			var s Storage = NewLocalDir(fs, root)
			objects := map[string]string{
				"tenants/a/timelines/1/index.json": "index a1",
				"tenants/a/timelines/1/layer-x":    "layer x",
				"tenants/a/timelines/2/index.json": "index a2",
				"tenants/b/timelines/1/index.json": "index b1",
			}
			for p, data := range objects {
				if err := s.Upload(ctx, p, strings.NewReader(data)); err != nil {
					t.Fatal(err)
				}
			}
			if err := s.Upload(ctx, "tenants/a/timelines/1/index.json", strings.NewReader("index a1 v2")); err != nil {
				t.Fatal(err)
			}
			if got, err := download(t, s, "tenants/a/timelines/1/index.json"); err != nil || got != "index a1 v2" {
				t.Errorf("download after overwrite = %q, %v; want %q", got, err, "index a1 v2")
			}
			lists := []struct {
				prefix string
				want   []string
			}{
				{"tenants/a/", []string{"tenants/a/timelines/1/index.json", "tenants/a/timelines/1/layer-x", "tenants/a/timelines/2/index.json"}},
				{"tenants/a/timelines/1/l", []string{"tenants/a/timelines/1/layer-x"}},
				{"tenants/b", []string{"tenants/b/timelines/1/index.json"}},
				{"tenants/c/", nil},
				{"", []string{"tenants/a/timelines/1/index.json", "tenants/a/timelines/1/layer-x", "tenants/a/timelines/2/index.json", "tenants/b/timelines/1/index.json"}},
			}
			for _, l := range lists {
				got, err := s.List(ctx, l.prefix)
				if err != nil || !reflect.DeepEqual(got, l.want) {
					t.Errorf("List(%q) = %v, %v; want %v", l.prefix, got, err, l.want)
				}
			}
			if err := s.Delete(ctx, "tenants/a/timelines/1/layer-x"); err != nil {
				t.Fatal(err)
			}
			if err := s.Delete(ctx, "tenants/a/timelines/1/layer-x"); err != nil {
				t.Errorf("deleting a missing object: %v", err)
			}
			if err := s.Delete(ctx, "tenants/never/timelines/uploaded/index.json"); err != nil {
				t.Errorf("deleting an object whose directory does not exist: %v", err)
			}
			for _, p := range []string{"tenants/a/timelines/1/layer-x", "tenants/a", "nothing"} {
				if _, err := download(t, s, p); !errors.Is(err, ErrNotFound) {
					t.Errorf("Download(%q) error = %v, want ErrNotFound", p, err)
				}
			}
			for _, p := range []string{"", "/abs", "a//b", "a/../b", "./a", "a/.upload-x"} {
				if err := s.Upload(ctx, p, strings.NewReader("x")); !errors.Is(err, ErrInvalidPath) {
					t.Errorf("Upload(%q) error = %v, want ErrInvalidPath", p, err)
				}
			}
		})
	}
}

// TestLocalDirUploadIsAtomic crashes during and after uploads: an object is
// either the old or the new version, never partial, and a completed
// upload survives.
func TestLocalDirUploadIsAtomic(t *testing.T) {
	ctx := context.Background()
	mem := vfs.NewMem()
	faulty := vfs.NewFaulty(mem)
	s := NewLocalDir(faulty, "/remote")
	if err := s.Upload(ctx, "t/index.json", strings.NewReader("v1")); err != nil {
		t.Fatal(err)
	}
	// The new version's rename fails, then the machine crashes.
	faulty.SetRule(vfs.FailOnce(vfs.OpRename, func(string) bool { return true }))
	if err := s.Upload(ctx, "t/index.json", strings.NewReader("v2")); !errors.Is(err, vfs.ErrInjected) {
		t.Fatalf("upload with a failed rename: error = %v, want ErrInjected", err)
	}
	faulty.SetRule(nil)
	if err := s.Upload(ctx, "t/new", strings.NewReader("complete")); err != nil {
		t.Fatal(err)
	}
	mem.Crash()
	mem.Restart()
	if got, err := download(t, s, "t/index.json"); err != nil || got != "v1" {
		t.Errorf("after the crash: %q, %v; want the old version v1", got, err)
	}
	if got, err := download(t, s, "t/new"); err != nil || got != "complete" {
		t.Errorf("completed upload after the crash: %q, %v", got, err)
	}
	if got, _ := s.List(ctx, ""); !reflect.DeepEqual(got, []string{"t/index.json", "t/new"}) {
		t.Errorf("List after the crash = %v", got)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if err := s.Upload(cancelled, "t/x", strings.NewReader("x")); !errors.Is(err, context.Canceled) {
		t.Errorf("upload with a cancelled context: error = %v", err)
	}
}
