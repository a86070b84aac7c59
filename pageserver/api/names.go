package api

import (
	"fmt"

	"github.com/zenithdb/zenith/repo/id"
)

// MaxNameLen bounds branch and compute node names.
const MaxNameLen = 63

// CheckName validates a name of a kind what ("branch", "node"): 1 to 63
// letters, digits, '_', '-' or '.', starting with a letter or digit, so that
// it is one word in a page service command and a safe directory name.
func CheckName(what, s string) error {
	if s == "" {
		return fmt.Errorf("empty %s name", what)
	}
	if len(s) > MaxNameLen {
		return fmt.Errorf("%s name %q is longer than %d characters", what, s, MaxNameLen)
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

// CheckBranchName validates the name of a new branch: a name (CheckName)
// that does not read as a timeline id, so that a reference to a timeline
// (CheckTimelineRef) is never ambiguous.
func CheckBranchName(name string) error {
	if err := CheckName("branch", name); err != nil {
		return err
	}
	if _, err := id.ParseTimelineID(name); err == nil {
		return fmt.Errorf("branch name %q reads as a timeline id (32 hex digits): choose another name", name)
	}
	return nil
}

// CheckTimelineRef validates a reference to a timeline: a timeline id (32
// hex digits) or a branch name.
func CheckTimelineRef(ref string) error {
	if _, err := id.ParseTimelineID(ref); err == nil {
		return nil
	}
	if err := CheckBranchName(ref); err != nil {
		return fmt.Errorf("%q is neither a timeline id (32 hex digits) nor a branch name: %w", truncate(ref, 64), err)
	}
	return nil
}

// truncate shortens outside input quoted in an error message.
func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "..."
}
