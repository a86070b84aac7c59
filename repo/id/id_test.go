package id

import (
	"strings"
	"testing"
)

func TestParse(t *testing.T) {
	tests := []struct {
		in string
		ok bool
	}{
		{"0123456789abcdef0123456789abcdef", true},
		{"00000000000000000000000000000000", true},
		{"0123456789ABCDEF0123456789abcdef", false}, // upper case is not how we print
		{"0123456789abcdef0123456789abcde", false},
		{"0123456789abcdef0123456789abcdef0", false},
		{"0123456789abcdef0123456789abcdeg", false},
		{"", false},
		{strings.Repeat("é", 16), false},
	}
	for _, tt := range tests {
		_, err := ParseTenantID(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("ParseTenantID(%q) error = %v, want ok=%v", tt.in, err, tt.ok)
		}
		_, err = ParseTimelineID(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("ParseTimelineID(%q) error = %v, want ok=%v", tt.in, err, tt.ok)
		}
	}
}

func TestRoundTrip(t *testing.T) {
	a, b := NewTenantID(), NewTenantID()
	if a == b {
		t.Fatalf("two new tenant ids are equal: %v", a)
	}
	s := a.String()
	if len(s) != 32 || strings.ToLower(s) != s {
		t.Errorf("String() = %q, want 32 lowercase hex characters", s)
	}
	got, err := ParseTenantID(s)
	if err != nil || got != a {
		t.Errorf("ParseTenantID(%q) = %v, %v; want %v", s, got, err, a)
	}
	tl := NewTimelineID()
	text, _ := tl.MarshalText()
	var back TimelineID
	if err := back.UnmarshalText(text); err != nil || back != tl {
		t.Errorf("UnmarshalText(%q) = %v, %v; want %v", text, back, err, tl)
	}
}

func FuzzParseTimelineID(f *testing.F) {
	f.Add("0123456789abcdef0123456789abcdef")
	f.Add("zz")
	f.Fuzz(func(t *testing.T, s string) {
		v, err := ParseTimelineID(s)
		if err == nil && v.String() != s {
			t.Fatalf("%q parsed but prints as %q", s, v.String())
		}
	})
}
