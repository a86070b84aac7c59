package control

import (
	"fmt"
	"runtime"
	"runtime/debug"

	"github.com/urfave/cli/v2"

	"github.com/zenithdb/zenith/walredo"
)

// BuildInfo is what a release build stamps into the binary with
// -ldflags -X (scripts/release).
type BuildInfo struct {
	// Version is the release version, "dev" when not stamped.
	Version string
	// Commit is the source commit; empty means the VCS stamp go build
	// records in a checkout, if any.
	Commit string
}

// commit returns b.Commit, or the revision go build recorded.
func (b BuildInfo) commit() string {
	if b.Commit != "" {
		return b.Commit
	}
	info, ok := debug.ReadBuildInfo()
	if !ok {
		return "unknown"
	}
	rev, dirty := "unknown", ""
	for _, s := range info.Settings {
		switch {
		case s.Key == "vcs.revision":
			rev = s.Value
		case s.Key == "vcs.modified" && s.Value == "true":
			dirty = "-dirty"
		}
	}
	return rev + dirty
}

// VersionCommand is `zenith version`.
func VersionCommand(b BuildInfo) *cli.Command {
	return &cli.Command{
		Name:  "version",
		Usage: "print zenith's version, commit, Go version and the PostgreSQL its redo module is for",
		Description: `Prints the release version and source commit this binary was built from, the
Go release that built it, and the PostgreSQL version the WAL redo module
inside it was compiled against (the page server needs that major version).

Examples:
  zenith version`,
		Action: func(c *cli.Context) error {
			if c.NArg() > 0 {
				return fmt.Errorf("version takes no arguments")
			}
			w := c.App.Writer
			fmt.Fprintf(w, "zenith %s\n", b.Version)
			fmt.Fprintf(w, "commit:       %s\n", b.commit())
			fmt.Fprintf(w, "go:           %s %s/%s\n", runtime.Version(), runtime.GOOS, runtime.GOARCH)
			m, err := walredo.EmbeddedModule()
			if err != nil {
				fmt.Fprintf(w, "redo module:  none (%v)\n", err)
				return nil
			}
			fmt.Fprintf(w, "postgresql:   %d\n", m.Build.Major())
			fmt.Fprintf(w, "redo module:  built for %s, sha256 %s\n", m.Build, m.Hash()[:16])
			return nil
		},
	}
}
