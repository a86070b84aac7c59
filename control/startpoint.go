package control

import (
	"fmt"
	"strings"
	"time"

	"github.com/zenithdb/zenith/repo/pgdata"
)

// StartPoint is where a new branch (or a read-only compute) begins: a
// branch, or a timeline id, and optionally an LSN or a point in time on it.
// It is written BRANCH, BRANCH@LSN (0/16B9188) or BRANCH@TIME (RFC 3339).
type StartPoint struct {
	Branch string
	// LSN is the point on Branch; 0 when not given.
	LSN pgdata.LSN
	// Time is the point on Branch, found by the page server from commit
	// timestamps; zero when not given.
	Time time.Time
}

// ParseStartPoint parses BRANCH, BRANCH@LSN or BRANCH@TIME.
func ParseStartPoint(s string) (StartPoint, error) {
	name, at, hasAt := strings.Cut(s, "@")
	if err := checkName("branch", name); err != nil {
		return StartPoint{}, fmt.Errorf("start point %q: %w", s, err)
	}
	p := StartPoint{Branch: name}
	if !hasAt {
		return p, nil
	}
	if strings.Contains(at, "/") {
		lsn, err := pgdata.ParseLSN(at)
		if err != nil {
			return StartPoint{}, fmt.Errorf("start point %q: %w (both halves are hexadecimal, as pg_current_wal_lsn() prints them)", s, err)
		}
		if lsn == 0 {
			return StartPoint{}, fmt.Errorf("start point %q: LSN 0/0 is before any WAL", s)
		}
		p.LSN = lsn
		return p, nil
	}
	t, err := time.Parse(time.RFC3339Nano, at)
	if err != nil {
		return StartPoint{}, fmt.Errorf("start point %q: after @ want an LSN such as 0/16B9188 or an RFC 3339 time such as 2024-05-01T12:00:00Z", s)
	}
	p.Time = t
	return p, nil
}

// String is the start point as the page server's branch_create takes it.
func (p StartPoint) String() string {
	switch {
	case p.LSN != 0:
		return p.Branch + "@" + p.LSN.String()
	case !p.Time.IsZero():
		return p.Branch + "@" + p.Time.UTC().Format(time.RFC3339Nano)
	}
	return p.Branch
}

// maxNameLen bounds branch and node names.
const maxNameLen = 63

// checkName validates a branch or compute node name: 1 to 63 letters,
// digits, '_', '-' or '.', starting with a letter or digit, so that it is
// one word in a page service command and a safe directory name.
func checkName(what, s string) error {
	if s == "" {
		return fmt.Errorf("empty %s name", what)
	}
	if len(s) > maxNameLen {
		return fmt.Errorf("%s name %q is longer than %d characters", what, s, maxNameLen)
	}
	for i, c := range s {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' ||
			i > 0 && (c == '_' || c == '-' || c == '.')
		if !ok {
			return fmt.Errorf("%s name %q: use letters, digits, '_', '-' and '.', starting with a letter or digit", what, s)
		}
	}
	return nil
}
