package repo_test

import (
	"context"
	"errors"
	"testing"

	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/value"
	"github.com/zenithdb/zenith/repo/vfs"
)

// TestStopIngest: a wait for an LSN after the stop, begun before or after
// it, fails at once with the reason; one at or below it succeeds.
func TestStopIngest(t *testing.T) {
	mem := vfs.NewMem()
	f := newFixture(t, mem, mem)
	defer f.r.Close()
	tl := f.timeline(t)
	put(t, tl, 0x100, map[key.Key]value.Value{blk(0): img("a")})
	waiting := make(chan error, 1)
	go func() { waiting <- tl.WaitForLSN(context.Background(), 0x300) }()
	if tl.IngestStopped() != nil {
		t.Fatalf("IngestStopped() = %v before StopIngest", tl.IngestStopped())
	}
	stop := tl.StopIngest("the record at 0/100 failed")
	if again := tl.StopIngest("another reason"); again != stop {
		t.Errorf("a second StopIngest = %v, want the first %v", again, stop)
	}
	if stop.LSN != 0x100 || tl.IngestStopped() != stop {
		t.Errorf("StopIngest = %v, IngestStopped() = %v; want the stop at 0/100", stop, tl.IngestStopped())
	}
	var se *repo.IngestStoppedError
	if err := <-waiting; !errors.As(err, &se) || se != stop || !errors.Is(err, repo.ErrIngestStopped) {
		t.Errorf("a wait begun before the stop: %v, want the stop", err)
	}
	if err := tl.WaitForLSN(context.Background(), 0x101); !errors.Is(err, repo.ErrIngestStopped) {
		t.Errorf("WaitForLSN(0/101) after the stop at 0/100: %v, want ErrIngestStopped", err)
	}
	if err := tl.WaitForLSN(context.Background(), 0x100); err != nil {
		t.Errorf("WaitForLSN(0/100) at the stop: %v", err)
	}
	want := "ingest of timeline " + tl.ID().String() + " stopped at LSN 0/100: the record at 0/100 failed"
	if stop.Error() != want {
		t.Errorf("Error() = %q, want %q", stop.Error(), want)
	}
}
