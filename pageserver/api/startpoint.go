package api

import (
	"fmt"
	"strings"
	"time"

	"github.com/zenithdb/zenith/repo/pgdata"
)

// StartPoint is where a new branch (or a read-only compute) begins: a
// timeline, by branch name or timeline id, and optionally an LSN or a
// point in time on it. It is written BRANCH, BRANCH@LSN (0/16B9188) or
// BRANCH@TIME (RFC 3339), in the CLI and in the page service's
// branch_create alike.
type StartPoint struct {
	// Branch is the timeline: a branch name or a timeline id.
	Branch string
	// LSN is the point on Branch; 0 when not given.
	LSN pgdata.LSN
	// Time is the point on Branch, found by the page server from commit
	// timestamps; zero when not given.
	Time time.Time
}

// ParseStartPoint parses BRANCH, BRANCH@LSN or BRANCH@TIME.
func ParseStartPoint(s string) (StartPoint, error) {
	ref, at, hasAt := strings.Cut(s, "@")
	if err := CheckTimelineRef(ref); err != nil {
		return StartPoint{}, fmt.Errorf("start point %q: %w", truncate(s, 128), err)
	}
	p := StartPoint{Branch: ref}
	if !hasAt {
		return p, nil
	}
	if strings.Contains(at, "/") {
		lsn, err := pgdata.ParseLSN(at)
		if err != nil {
			return StartPoint{}, fmt.Errorf("start point %q: %w (both halves are hexadecimal, as pg_current_wal_lsn() prints them)", truncate(s, 128), err)
		}
		if lsn == 0 {
			return StartPoint{}, fmt.Errorf("start point %q: LSN 0/0 is before any WAL", s)
		}
		p.LSN = lsn
		return p, nil
	}
	t, err := time.Parse(time.RFC3339Nano, at)
	if err != nil {
		return StartPoint{}, fmt.Errorf("start point %q: after @ want an LSN such as 0/16B9188 or an RFC 3339 time such as 2024-05-01T12:00:00Z", truncate(s, 128))
	}
	// In UTC, as String writes it, so that a start point reads back equal.
	p.Time = t.UTC()
	return p, nil
}

// String is the start point as ParseStartPoint reads it back, and as the
// page server's branch_create takes it.
func (p StartPoint) String() string {
	switch {
	case p.LSN != 0:
		return p.Branch + "@" + p.LSN.String()
	case !p.Time.IsZero():
		return p.Branch + "@" + p.Time.UTC().Format(time.RFC3339Nano)
	}
	return p.Branch
}
