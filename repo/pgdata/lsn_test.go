package pgdata

import "testing"

func TestParseLSN(t *testing.T) {
	tests := []struct {
		in   string
		want LSN
		ok   bool
	}{
		{"0/16B9188", 0x16B9188, true},
		{"0/0", 0, true},
		{"1/0", 1 << 32, true},
		{"ffffffff/FFFFFFFF", MaxLSN, true},
		{"A/1a2b3c4d", 0xA<<32 | 0x1A2B3C4D, true},
		{"", 0, false},
		{"16B9188", 0, false},
		{"0/", 0, false},
		{"/1", 0, false},
		{"0/1/2", 0, false},
		{"0/G", 0, false},
		{"0/-1", 0, false},
		{"0/+1", 0, false},
		{"100000000/0", 0, false},
		{" 0/1", 0, false},
		{"0x1/1", 0, false},
	}
	for _, tt := range tests {
		got, err := ParseLSN(tt.in)
		if (err == nil) != tt.ok {
			t.Errorf("ParseLSN(%q) error = %v, want ok=%v", tt.in, err, tt.ok)
			continue
		}
		if tt.ok && got != tt.want {
			t.Errorf("ParseLSN(%q) = %v, want %v", tt.in, got, tt.want)
		}
	}
}

func TestLSNStringRoundTrip(t *testing.T) {
	for _, l := range []LSN{0, 1, 0x16B9188, 1<<32 | 0xABC, MaxLSN} {
		got, err := ParseLSN(l.String())
		if err != nil || got != l {
			t.Errorf("round trip of %d: got %v, %v", uint64(l), got, err)
		}
	}
	if got, want := LSN(0x16B9188).String(), "0/16B9188"; got != want {
		t.Errorf("String() = %q, want %q", got, want)
	}
}

func FuzzParseLSN(f *testing.F) {
	for _, s := range []string{"0/16B9188", "FFFFFFFF/FFFFFFFF", "1/", "x"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		l, err := ParseLSN(s)
		if err != nil {
			return
		}
		back, err := ParseLSN(l.String())
		if err != nil || back != l {
			t.Fatalf("%q parsed as %v but its String does not round-trip: %v %v", s, l, back, err)
		}
	})
}
