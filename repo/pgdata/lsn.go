package pgdata

import (
	"fmt"
	"strconv"
	"strings"
)

// LSN is a position in the WAL stream (PostgreSQL's XLogRecPtr): a byte
// offset from the start of WAL.
type LSN uint64

// InvalidLSN is PostgreSQL's InvalidXLogRecPtr.
const InvalidLSN LSN = 0

// MaxLSN is the largest possible LSN, FFFFFFFF/FFFFFFFF.
const MaxLSN LSN = ^LSN(0)

// String prints the LSN the way PostgreSQL does: two hexadecimal halves
// separated by a slash, upper case, without leading zeros ("0/16B9188").
func (l LSN) String() string {
	return fmt.Sprintf("%X/%X", uint32(l>>32), uint32(l))
}

// ParseLSN parses an LSN printed as PostgreSQL prints it, "%X/%X", where
// both halves are hexadecimal of at most eight digits. Anything else is an
// error naming the input; it never yields a silent zero.
func ParseLSN(s string) (LSN, error) {
	hi, lo, ok := strings.Cut(s, "/")
	if !ok {
		return 0, fmt.Errorf("invalid LSN %q: want two hexadecimal halves separated by '/', e.g. 0/16B9188", s)
	}
	h, err := parseHalf(hi)
	if err != nil {
		return 0, fmt.Errorf("invalid LSN %q: high half: %w", s, err)
	}
	l, err := parseHalf(lo)
	if err != nil {
		return 0, fmt.Errorf("invalid LSN %q: low half: %w", s, err)
	}
	return LSN(h)<<32 | LSN(l), nil
}

func parseHalf(s string) (uint32, error) {
	if s == "" || len(s) > 8 {
		return 0, fmt.Errorf("want 1 to 8 hexadecimal digits, got %q", s)
	}
	for _, c := range s {
		if !strings.ContainsRune("0123456789abcdefABCDEF", c) {
			return 0, fmt.Errorf("%q is not a hexadecimal digit", c)
		}
	}
	v, err := strconv.ParseUint(s, 16, 32)
	if err != nil {
		return 0, err
	}
	return uint32(v), nil
}

// MarshalText implements encoding.TextMarshaler, so LSNs appear as "X/X"
// in JSON and TOML.
func (l LSN) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (l *LSN) UnmarshalText(b []byte) error {
	v, err := ParseLSN(string(b))
	if err != nil {
		return err
	}
	*l = v
	return nil
}

// SegmentNo is the number of the WAL segment that holds l.
func (l LSN) SegmentNo(segSize uint64) uint64 { return uint64(l) / segSize }

// SegmentOffset is l's byte offset within its WAL segment.
func (l LSN) SegmentOffset(segSize uint64) uint64 { return uint64(l) % segSize }

// PageOffset is l's byte offset within its WAL page.
func (l LSN) PageOffset() uint64 { return uint64(l) % XLogBlockSize }

// Align rounds l up to the next multiple of 8 (PostgreSQL's MAXALIGN),
// where every WAL record starts.
func (l LSN) Align() LSN { return (l + 7) &^ 7 }
