package safekeeper

import (
	"testing"

	"github.com/zenithdb/zenith/repo/pgdata"
)

// FuzzDecodeControl: any bytes either decode to a control file that
// encodes back to the same bytes, or are rejected; never a panic.
func FuzzDecodeControl(f *testing.F) {
	good, err := encodeControl(&Control{SegmentSize: pgdata.WALSegmentSize, Term: 2, History: History{{1, 8}, {2, 16}}})
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good)
	f.Add(good[:len(good)-1])
	f.Add([]byte("ZSKC"))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := decodeControl(b)
		if err != nil {
			return
		}
		if _, err := encodeControl(c); err != nil {
			t.Fatalf("a decoded control file does not encode: %v", err)
		}
	})
}

// FuzzParseHistory: what parses prints back to itself.
func FuzzParseHistory(f *testing.F) {
	for _, s := range []string{"", "1@0/0", "1@0/16B9188,4@1/0", "2@0/10,1@0/20", "1@", "@0/0,"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		h, err := ParseHistory(s)
		if err != nil {
			return
		}
		h2, err := ParseHistory(h.String())
		if err != nil || h2.String() != h.String() {
			t.Fatalf("ParseHistory(%q) = %v, which reparses as %v, %v", s, h, h2, err)
		}
	})
}
