package datadir

import (
	"errors"
	"slices"
	"testing"
)

func TestDirectoryRoundTrip(t *testing.T) {
	dbs := DBDir{{1663, 1}, {1663, 5}, {1664, 0}}
	if got, err := DecodeDBDir(EncodeDBDir(dbs)); err != nil || !slices.Equal(got, dbs) {
		t.Errorf("DBDir round trip = %v, %v; want %v", got, err, dbs)
	}
	rels := RelDir{{1259, 0b0111}, {16384, 0b1001}}
	if got, err := DecodeRelDir(EncodeRelDir(rels)); err != nil || !slices.Equal(got, rels) {
		t.Errorf("RelDir round trip = %v, %v; want %v", got, err, rels)
	}
	segs := SLRUDir{0, 1, 0xFFFF}
	if got, err := DecodeSLRUDir(EncodeSLRUDir(segs)); err != nil || !slices.Equal(got, segs) {
		t.Errorf("SLRUDir round trip = %v, %v; want %v", got, err, segs)
	}
	xids := TwoPhaseDir{740, 741}
	if got, err := DecodeTwoPhaseDir(EncodeTwoPhaseDir(xids)); err != nil || !slices.Equal(got, xids) {
		t.Errorf("TwoPhaseDir round trip = %v, %v; want %v", got, err, xids)
	}
	aux := AuxDir{"PG_VERSION", "base/1/PG_VERSION", "postgresql.conf"}
	if got, err := DecodeAuxDir(EncodeAuxDir(aux)); err != nil || !slices.Equal(got, aux) {
		t.Errorf("AuxDir round trip = %v, %v; want %v", got, err, aux)
	}
	p, c, err := DecodeAuxFile(EncodeAuxFile("PG_VERSION", []byte("15\n")))
	if err != nil || p != "PG_VERSION" || string(c) != "15\n" {
		t.Errorf("aux file round trip = %q, %q, %v", p, c, err)
	}
	if got, err := DecodeDBDir(EncodeDBDir(nil)); err != nil || len(got) != 0 {
		t.Errorf("empty DBDir round trip = %v, %v", got, err)
	}
}

func TestDirectoryDecodeRejects(t *testing.T) {
	for _, tc := range []struct {
		name   string
		b      []byte
		decode func([]byte) error
	}{
		{"empty", nil, decodeErr(DecodeDBDir)},
		{"wrong magic", EncodeSLRUDir(SLRUDir{1}), decodeErr(DecodeTwoPhaseDir)},
		{"rel dir as db dir", EncodeRelDir(RelDir{{1, 1}}), decodeErr(DecodeDBDir)},
		{"future version", []byte{dirMagicDB, 2, 0, 0, 0, 0}, decodeErr(DecodeDBDir)},
		{"count too big", []byte{dirMagicSLRU, 1, 0, 0, 0, 2, 0, 0, 0, 1}, decodeErr(DecodeSLRUDir)},
		{"trailing byte", append(EncodeSLRUDir(SLRUDir{1}), 0), decodeErr(DecodeSLRUDir)},
		{"unsorted", []byte{dirMagicSLRU, 1, 0, 0, 0, 2, 0, 0, 0, 2, 0, 0, 0, 1}, decodeErr(DecodeSLRUDir)},
		{"duplicate", []byte{dirMagicSLRU, 1, 0, 0, 0, 2, 0, 0, 0, 1, 0, 0, 0, 1}, decodeErr(DecodeSLRUDir)},
		{"relnode 0", EncodeRelDir(RelDir{{0, 1}}), decodeErr(DecodeRelDir)},
		{"no forks", EncodeRelDir(RelDir{{5, 0}}), decodeErr(DecodeRelDir)},
		{"unknown fork", EncodeRelDir(RelDir{{5, 0x10}}), decodeErr(DecodeRelDir)},
		{"xid 0", EncodeTwoPhaseDir(TwoPhaseDir{0}), decodeErr(DecodeTwoPhaseDir)},
		{"aux path with ..", EncodeAuxDir(AuxDir{"../etc/passwd"}), decodeErr(DecodeAuxDir)},
		{"aux absolute path", EncodeAuxFile("/etc/passwd", nil), func(b []byte) error { _, _, err := DecodeAuxFile(b); return err }},
		{"aux dir unsorted", EncodeAuxDir(AuxDir{"b", "a"}), decodeErr(DecodeAuxDir)},
		{"aux dir truncated", EncodeAuxDir(AuxDir{"PG_VERSION"})[:9], decodeErr(DecodeAuxDir)},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if err := tc.decode(tc.b); !errors.Is(err, ErrMalformedDir) {
				t.Errorf("decode(%x) error = %v, want ErrMalformedDir", tc.b, err)
			}
		})
	}
}

func decodeErr[T any](decode func([]byte) (T, error)) func([]byte) error {
	return func(b []byte) error { _, err := decode(b); return err }
}

func TestParseNames(t *testing.T) {
	for _, tc := range []struct {
		name  string
		parse func(string) (uint32, error)
		want  uint32
		ok    bool
	}{
		{"0000", ParseSLRUSegmentName, 0, true},
		{"001A", ParseSLRUSegmentName, 0x1A, true},
		{"1FFFF", ParseSLRUSegmentName, 0x1FFFF, true},
		{"01FFF", ParseSLRUSegmentName, 0, false},
		{"001a", ParseSLRUSegmentName, 0, false},
		{"000", ParseSLRUSegmentName, 0, false},
		{"000002E4", ParseTwoPhaseName, 0x2E4, true},
		{"00000000", ParseTwoPhaseName, 0, false},
		{"2E4", ParseTwoPhaseName, 0, false},
	} {
		got, err := tc.parse(tc.name)
		if (err == nil) != tc.ok || got != tc.want {
			t.Errorf("parse(%q) = %d, %v; want %d, ok=%v", tc.name, got, err, tc.want, tc.ok)
		}
	}
}

// FuzzDecodeDirectory checks that no input makes a directory decoder
// panic, and that whatever decodes re-encodes to the same bytes (one
// encoding per directory).
func FuzzDecodeDirectory(f *testing.F) {
	f.Add(EncodeDBDir(DBDir{{1663, 1}, {1664, 0}}))
	f.Add(EncodeRelDir(RelDir{{1259, 7}}))
	f.Add(EncodeSLRUDir(SLRUDir{0, 3}))
	f.Add(EncodeTwoPhaseDir(TwoPhaseDir{740}))
	f.Add(EncodeAuxDir(AuxDir{"PG_VERSION", "base/1/PG_VERSION"}))
	f.Add(EncodeAuxFile("PG_VERSION", []byte("15\n")))
	f.Fuzz(func(t *testing.T, b []byte) {
		check := func(name string, enc []byte, err error) {
			if err == nil && string(enc) != string(b) {
				t.Errorf("%s: %x decodes but re-encodes to %x", name, b, enc)
			}
		}
		if d, err := DecodeDBDir(b); err == nil {
			check("DBDir", EncodeDBDir(d), nil)
		}
		if d, err := DecodeRelDir(b); err == nil {
			check("RelDir", EncodeRelDir(d), nil)
		}
		if d, err := DecodeSLRUDir(b); err == nil {
			check("SLRUDir", EncodeSLRUDir(d), nil)
		}
		if d, err := DecodeTwoPhaseDir(b); err == nil {
			check("TwoPhaseDir", EncodeTwoPhaseDir(d), nil)
		}
		if d, err := DecodeAuxDir(b); err == nil {
			check("AuxDir", EncodeAuxDir(d), nil)
		}
		if p, c, err := DecodeAuxFile(b); err == nil {
			check("aux file", EncodeAuxFile(p, c), nil)
		}
	})
}
