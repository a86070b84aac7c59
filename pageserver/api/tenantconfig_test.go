package api

import (
	"testing"
	"time"
)

func TestRetentionChangeArgs(t *testing.T) {
	h, p := int64(1<<30), 24*time.Hour
	want := RetentionChange{GCHorizon: &h, PITRInterval: &p}
	var got RetentionChange
	for _, a := range want.Args() {
		if err := got.ParseArg(a); err != nil {
			t.Fatalf("ParseArg(%q): %v", a, err)
		}
	}
	if got.GCHorizon == nil || *got.GCHorizon != h || got.PITRInterval == nil || *got.PITRInterval != p {
		t.Errorf("round trip of %v = %+v", want.Args(), got)
	}
	for _, bad := range []string{"gc_horizon", "gc_horizon=-1", "gc_horizon=1GB", "pitr_interval=-1h", "pitr_interval=1d", "checkpoint_distance=1", "=1"} {
		var c RetentionChange
		if err := c.ParseArg(bad); err == nil {
			t.Errorf("ParseArg(%q) accepted it", bad)
		}
	}
}
