package pgdata

import (
	"bytes"
	"strings"
	"testing"
)

// pglzLiterals encodes b as pglz literals only: a zero control byte before
// every eight bytes.
func pglzLiterals(b []byte) []byte {
	var out []byte
	for i, c := range b {
		if i%8 == 0 {
			out = append(out, 0)
		}
		out = append(out, c)
	}
	return out
}

func TestPGLZDecompress(t *testing.T) {
	long := bytes.Repeat([]byte("abcdefgh"), 38) // 304 bytes: whole control groups
	tests := []struct {
		name string
		src  []byte
		want string // "" with wantErr
		n    int    // output size, when want is ""
		ok   bool
	}{
		{"literals", pglzLiterals([]byte("abcdefghij")), "abcdefghij", 0, true},
		// 'a' 'b', then 6 bytes from 2 back: the reference overlaps what it
		// writes and repeats "ab".
		{"overlapping reference", []byte{0x04, 'a', 'b', 0x03, 0x02}, "abababab", 0, true},
		// Length nibble 0xF: a third byte adds to 18.
		{"extended length", []byte{0x02, 'x', 0x0F, 0x01, 100}, strings.Repeat("x", 119), 0, true},
		// A 12-bit offset, 0x12D = 301: the high nibble of the first tag byte.
		{"long offset", append(append(pglzLiterals(long), 0x01), 0x17, 0x2D), string(long) + string(long[3:13]), 0, true},
		{"offset zero", []byte{0x02, 'a', 0x00, 0x00}, "", 4, false},
		{"offset before the output", []byte{0x02, 'a', 0x00, 0x05}, "", 4, false},
		{"truncated tag", []byte{0x02, 'a', 0x00}, "", 4, false},
		{"truncated extension byte", []byte{0x02, 'a', 0x0F, 0x01}, "", 30, false},
		{"too little output", pglzLiterals([]byte("abc")), "", 4, false},
		{"input left over", pglzLiterals([]byte("abcde")), "", 4, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			n := len(tt.want)
			if !tt.ok {
				n = tt.n
			}
			dst := make([]byte, n)
			err := pglzDecompress(tt.src, dst)
			if (err == nil) != tt.ok {
				t.Fatalf("pglzDecompress error = %v, want ok=%v", err, tt.ok)
			}
			if tt.ok && string(dst) != tt.want {
				t.Errorf("pglzDecompress = %q, want %q", dst, tt.want)
			}
		})
	}
}
