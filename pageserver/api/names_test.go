package api

import (
	"strings"
	"testing"
)

const timelineHex = "fedcba9876543210fedcba9876543210"

func TestCheckBranchName(t *testing.T) {
	for name, ok := range map[string]bool{
		"main": true, "dev-2": true, "a.b_c": true, "9lives": true, strings.Repeat("a", 63): true,
		"": false, "-x": false, ".x": false, "a b": false, "a/b": false, "a@b": false, "ü": false,
		strings.Repeat("a", 64): false, timelineHex: false,
	} {
		if err := CheckBranchName(name); (err == nil) != ok {
			t.Errorf("CheckBranchName(%q) = %v, want ok=%v", name, err, ok)
		}
	}
}

func TestCheckTimelineRef(t *testing.T) {
	for ref, ok := range map[string]bool{
		"main": true, timelineHex: true, strings.ToUpper(timelineHex): true,
		"": false, "a b": false, timelineHex + "0": true, // 33 hex digits: a name
		strings.Repeat("a", 64): false,
	} {
		if err := CheckTimelineRef(ref); (err == nil) != ok {
			t.Errorf("CheckTimelineRef(%q) = %v, want ok=%v", ref, err, ok)
		}
	}
}
