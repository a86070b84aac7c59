package api

import (
	"strings"
	"testing"
	"time"

	"github.com/zenithdb/zenith/repo/pgdata"
)

func TestParseStartPoint(t *testing.T) {
	for _, tc := range []struct {
		in      string
		want    StartPoint
		wantErr string // substring; "" means success
	}{
		{in: "main", want: StartPoint{Branch: "main"}},
		{in: "feature-1.x", want: StartPoint{Branch: "feature-1.x"}},
		{in: "main@0/16B9188", want: StartPoint{Branch: "main", LSN: 0x16B9188}},
		{in: "main@1/0", want: StartPoint{Branch: "main", LSN: 1 << 32}},
		{in: "main@0/16b9188", want: StartPoint{Branch: "main", LSN: 0x16B9188}},
		{in: "main@2024-05-01T12:00:00Z", want: StartPoint{Branch: "main", Time: time.Date(2024, 5, 1, 12, 0, 0, 0, time.UTC)}},
		{in: "main@2024-05-01T14:00:00.5+02:00", want: StartPoint{Branch: "main", Time: time.Date(2024, 5, 1, 12, 0, 0, 5e8, time.UTC)}},
		{in: "0123456789abcdef0123456789abcdef@0/10", want: StartPoint{Branch: "0123456789abcdef0123456789abcdef", LSN: 0x10}},
		{in: "", wantErr: "empty branch name"},
		{in: "@0/1", wantErr: "empty branch name"},
		{in: "-x", wantErr: "starting with a letter"},
		{in: "a b", wantErr: "use letters"},
		{in: "main@", wantErr: "RFC 3339"},
		{in: "main@23810440", wantErr: "RFC 3339"},            // a decimal byte position, not an LSN
		{in: "main@0/23810440.5", wantErr: "hexadecimal"},     // decimal fraction
		{in: "main@12.5/3", wantErr: "hexadecimal"},           // decimal high half
		{in: "main@0/123456789", wantErr: "1 to 8"},           // more than 32 bits
		{in: "main@0/0", wantErr: "before any WAL"},           //
		{in: "main@0/16B9188/1", wantErr: "hexadecimal"},      // garbage
		{in: "main@yesterday", wantErr: "RFC 3339"},           //
		{in: "main@2024-05-01 12:00:00", wantErr: "RFC 3339"}, // not RFC 3339
		{in: "main@0/1@0/2", wantErr: "hexadecimal"},
	} {
		got, err := ParseStartPoint(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseStartPoint(%q) = %+v, %v; want error containing %q", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		if err != nil {
			t.Errorf("ParseStartPoint(%q): %v", tc.in, err)
			continue
		}
		if got.Branch != tc.want.Branch || got.LSN != tc.want.LSN || !got.Time.Equal(tc.want.Time) {
			t.Errorf("ParseStartPoint(%q) = %+v, want %+v", tc.in, got, tc.want)
		}
	}
}

func TestStartPointString(t *testing.T) {
	for _, tc := range []struct {
		p    StartPoint
		want string
	}{
		{StartPoint{Branch: "main"}, "main"},
		{StartPoint{Branch: "main", LSN: pgdata.LSN(0x16B9188)}, "main@0/16B9188"},
		{StartPoint{Branch: "b", Time: time.Date(2024, 5, 1, 14, 0, 0, 0, time.FixedZone("x", 7200))}, "b@2024-05-01T12:00:00Z"},
	} {
		if got := tc.p.String(); got != tc.want {
			t.Errorf("%+v.String() = %q, want %q", tc.p, got, tc.want)
		}
		back, err := ParseStartPoint(tc.want)
		if err != nil || back.String() != tc.want {
			t.Errorf("ParseStartPoint(%q) = %+v, %v: does not round-trip", tc.want, back, err)
		}
	}
}
