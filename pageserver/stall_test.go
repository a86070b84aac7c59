package pageserver

import (
	"strings"
	"testing"
	"time"

	"github.com/zenithdb/zenith/pageserver/pstest"
	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/value"
	"github.com/zenithdb/zenith/repo/vfs"
)

// stallingWAL is a timeline's WAL side whose store write or fsync has
// been in progress since since ("" op: none).
type stallingWAL struct {
	timelineWAL
	op    string
	since time.Time
}

func (w stallingWAL) StoreStalled(now time.Time, threshold time.Duration) (string, time.Time) {
	if w.op == "" || now.Sub(w.since) <= threshold {
		return "", time.Time{}
	}
	return w.op, w.since
}

// TestTimelineStall: a timeline is stalled when its flush or its WAL
// store's write or fsync has been in progress for longer than the
// threshold, and the report names the one that began first.
func TestTimelineStall(t *testing.T) {
	cfg := repo.DefaultConfig(t.TempDir())
	fs := vfs.NewFaulty(vfs.Default)
	cfg.FS, cfg.Redo = fs, pstest.NoRedo{}
	cfg.FlushInterval, cfg.CompactionInterval, cfg.GCInterval = 0, 0, 0
	r, err := repo.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	_, tl := pstest.NewTimeline(t, r)
	gate := vfs.NewGate(vfs.OpSync, func(name string) bool { return strings.Contains(name, tl.ID().String()) })
	defer gate.Release()

	const threshold = 10 * time.Second
	before := time.Now()
	cases := []struct {
		name     string
		flushing bool // a flush of the timeline is held
		wal      timelineWAL
		at       time.Duration // after before
		want     string
	}{
		{"idle", false, nil, time.Hour, ""},
		{"idle with an idle WAL store", false, stallingWAL{}, time.Hour, ""},
		{"WAL fsync under the threshold", false, stallingWAL{op: "WAL store fsync", since: before}, 5 * time.Second, ""},
		{"WAL fsync past the threshold", false, stallingWAL{op: "WAL store fsync", since: before}, time.Minute, "WAL store fsync"},
		{"flush under the threshold", true, nil, 0, ""},
		{"flush past the threshold", true, nil, time.Hour, repo.OpLayerWrite},
		{"flush began before the WAL fsync", true, stallingWAL{op: "WAL store fsync", since: before.Add(time.Hour)}, 3 * time.Hour, repo.OpLayerWrite},
		{"WAL fsync began before the flush", true, stallingWAL{op: "WAL store fsync", since: before.Add(-time.Hour)}, 3 * time.Hour, "WAL store fsync"},
	}
	flushed := make(chan error, 1)
	held := false
	for _, tc := range cases {
		if tc.flushing && !held {
			held = true
			fs.SetRule(gate.Rule)
			if err := tl.Put(key.RelBlock(pgdata.RelFileNode{SpcNode: 1663, DbNode: 5, RelNode: 16384}, pgdata.ForkMain, 0), 0x100, value.Image(make([]byte, 8192))); err != nil {
				t.Fatal(err)
			}
			if err := tl.FinishWrite(0x100, 0); err != nil {
				t.Fatal(err)
			}
			go func() { flushed <- tl.Flush(t.Context()) }()
			<-gate.Held()
		}
		op, since := timelineStall(tl, tc.wal, before.Add(tc.at), threshold)
		if op != tc.want {
			t.Errorf("%s: got %q, want %q", tc.name, op, tc.want)
		}
		if (op == "") != since.IsZero() {
			t.Errorf("%s: stalled %q since %v", tc.name, op, since)
		}
	}
	gate.Release()
	if err := <-flushed; err != nil {
		t.Fatal(err)
	}
	if op, _ := timelineStall(tl, nil, time.Now().Add(time.Hour), threshold); op != "" {
		t.Errorf("after the flush returned: stalled %q, want nothing", op)
	}
}
