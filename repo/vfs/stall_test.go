package vfs_test

import (
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zenithdb/zenith/repo/vfs"
)

func TestInProgressStalled(t *testing.T) {
	var p vfs.InProgress
	if op, since := p.Stalled(time.Now(), 0); op != "" || !since.IsZero() {
		t.Fatalf("idle: got %q since %v, want nothing", op, since)
	}
	end := p.Begin("layer flush")
	op, began := p.Current()
	if op != "layer flush" || began.IsZero() {
		t.Fatalf("Current() = %q, %v; want the flush and its start", op, began)
	}
	for _, tc := range []struct {
		name  string
		after time.Duration
		want  string
	}{
		{"before the threshold", 5 * time.Second, ""},
		{"at the threshold", 10 * time.Second, ""},
		{"past the threshold", 11 * time.Second, "layer flush"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			op, since := p.Stalled(began.Add(tc.after), 10*time.Second)
			if op != tc.want {
				t.Fatalf("Stalled after %v: got %q, want %q", tc.after, op, tc.want)
			}
			if op != "" && !since.Equal(began) {
				t.Fatalf("Stalled since %v, want %v", since, began)
			}
		})
	}
	end()
	if op, _ := p.Stalled(began.Add(time.Hour), time.Second); op != "" {
		t.Fatalf("after the end: got %q, want nothing stalled", op)
	}
}

func TestGateHoldsUntilReleased(t *testing.T) {
	dir := t.TempDir()
	fs := vfs.NewFaulty(vfs.Default)
	g := vfs.NewGate(vfs.OpSync, func(name string) bool { return strings.HasSuffix(name, ".slow") })
	fs.SetRule(g.Rule)
	open := func(name string) vfs.File {
		f, err := fs.Create(filepath.Join(dir, name))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { f.Close() })
		return f
	}
	fast, slow := open("a.fast"), open("b.slow")
	if err := fast.Sync(); err != nil {
		t.Fatalf("sync of a file the gate does not match: %v", err)
	}
	synced := make(chan error, 1)
	go func() { synced <- slow.Sync() }()
	<-g.Held()
	select {
	case err := <-synced:
		t.Fatalf("the held sync returned (%v) before the release", err)
	case <-time.After(50 * time.Millisecond):
	}
	if err := fast.Sync(); err != nil {
		t.Fatalf("sync of another file while one is held: %v", err)
	}
	g.Release()
	if err := <-synced; err != nil {
		t.Fatalf("released sync: %v", err)
	}
	if err := slow.Sync(); err != nil {
		t.Fatalf("sync after the release: %v", err)
	}
}
