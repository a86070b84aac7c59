package control

import (
	"slices"
	"testing"
)

// TestStalledStatusLine: zenith status says which timeline's write has
// stalled, since when and how many others are, and nothing once none is.
func TestStalledStatusLine(t *testing.T) {
	const since = "2026-12-03T15:00:00Z"
	cases := []struct {
		name string
		m    processMemory
		want []string
	}{
		{"none", processMemory{StalledTimelines: "0"}, nil},
		{"one", processMemory{Stalled: "timeline a of tenant b: WAL store fsync", StalledSince: since, StalledTimelines: "1"},
			[]string{"STALLED since " + since + ": timeline a of tenant b: WAL store fsync (the disk has not answered; nothing of it is acknowledged until it does; other timelines go on)"}},
		{"three", processMemory{Stalled: "timeline a of tenant b: layer file write and fsync", StalledSince: since, StalledTimelines: "3"},
			[]string{"STALLED since " + since + ": timeline a of tenant b: layer file write and fsync, and 2 other timelines (the disk has not answered; nothing of it is acknowledged until it does; other timelines go on)"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if got := tc.m.diskLines(); !slices.Equal(got, tc.want) {
				t.Errorf("got %q\nwant %q", got, tc.want)
			}
		})
	}
}
