package pageserver

import (
	"slices"
	"testing"
)

func TestRuntimeEnviron(t *testing.T) {
	tests := []struct {
		name    string
		environ []string
		want    []string
		changed bool
	}{
		{"no GODEBUG", []string{"HOME=/root", "PATH=/bin"},
			[]string{"HOME=/root", "PATH=/bin", "GODEBUG=schedtrace=2147483647"}, true},
		{"other settings kept after ours", []string{"GODEBUG=gctrace=1", "HOME=/root"},
			[]string{"HOME=/root", "GODEBUG=schedtrace=2147483647,gctrace=1"}, true},
		{"empty GODEBUG", []string{"GODEBUG="},
			[]string{"GODEBUG=schedtrace=2147483647"}, true},
		{"schedtrace set by the caller", []string{"GODEBUG=gctrace=1,schedtrace=1000", "HOME=/root"},
			[]string{"GODEBUG=gctrace=1,schedtrace=1000", "HOME=/root"}, false},
		{"set once: the result needs no second exec", []string{"GODEBUG=schedtrace=2147483647"},
			[]string{"GODEBUG=schedtrace=2147483647"}, false},
	}
	for _, tt := range tests {
		got, changed := RuntimeEnviron(tt.environ)
		if !slices.Equal(got, tt.want) || changed != tt.changed {
			t.Errorf("%s: RuntimeEnviron(%q) = %q, %v; want %q, %v", tt.name, tt.environ, got, changed, tt.want, tt.changed)
		}
	}
}
