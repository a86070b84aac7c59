package workload

import (
	"fmt"
	"regexp"
	"strconv"
)

// SeqLogVals is how many values nextval WAL-logs ahead (SEQ_LOG_VALS in
// sequence.c): a server started from the WAL (a standby, crash recovery,
// a compute built from the page server) continues a sequence up to that
// many values after the original.
const SeqLogVals = 32

// locationLine matches pg_dumpall's line that creates TablespaceLocation.
var locationLine = regexp.MustCompile(`(?m)^(CREATE TABLESPACE ` + TablespaceLocation + ` OWNER \S+ LOCATION )'[^']*';$`)

// MaskTablespaceLocation replaces, in pg_dumpall's output, the location of
// TablespaceLocation with "LOCATION": servers that hold the same data
// differ there when one's data directory was rebuilt elsewhere and keeps
// the tablespace in a directory of its own.
func MaskTablespaceLocation(dump string) string {
	return locationLine.ReplaceAllString(dump, "${1}'LOCATION';")
}

// setvalLine matches pg_dump's line restoring a sequence's value.
var setvalLine = regexp.MustCompile(`(?m)^SELECT pg_catalog\.setval\('([^']+)', (\d+), (true|false)\);$`)

// CompareDumps reports how got, a dump of a server started from the WAL,
// differs from want, the original's: nil if they are equal but for
// sequences up to SeqLogVals values ahead of the original's.
func CompareDumps(got, want string) error {
	gotSeqs, wantSeqs := map[string]int64{}, map[string]int64{}
	mask := func(dump string, seqs map[string]int64) string {
		return setvalLine.ReplaceAllStringFunc(dump, func(line string) string {
			m := setvalLine.FindStringSubmatch(line)
			seqs[m[1]], _ = strconv.ParseInt(m[2], 10, 64)
			return fmt.Sprintf("SELECT pg_catalog.setval('%s', N, %s);", m[1], m[3])
		})
	}
	if g, w := mask(got, gotSeqs), mask(want, wantSeqs); g != w {
		return fmt.Errorf("dumps differ: %s", firstDifference(g, w))
	}
	for seq, w := range wantSeqs {
		if g := gotSeqs[seq]; g < w || g > w+SeqLogVals {
			return fmt.Errorf("sequence %s: %d, want %d to %d", seq, g, w, w+SeqLogVals)
		}
	}
	return nil
}

// firstDifference shows the first line where two texts differ.
func firstDifference(got, want string) string {
	line, start := 1, 0
	for i := 0; i < len(got) && i < len(want); i++ {
		if got[i] != want[i] {
			return fmt.Sprintf("line %d: got %q, want %q", line, lineFrom(got, start), lineFrom(want, start))
		}
		if got[i] == '\n' {
			line, start = line+1, i+1
		}
	}
	return fmt.Sprintf("one is a prefix of the other (%d vs %d bytes)", len(got), len(want))
}

func lineFrom(s string, start int) string {
	for i := start; i < len(s); i++ {
		if s[i] == '\n' {
			return s[start:i]
		}
	}
	return s[start:]
}
