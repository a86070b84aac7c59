// Command zenith is PostgreSQL with storage separated from compute: a page
// server and safekeepers hold the durable state, and stock PostgreSQL 15
// servers are disposable compute nodes on any branch at any point in its
// history. Every role and every user-facing command is in this one binary.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/urfave/cli/v2"

	"github.com/zenithdb/zenith/control"
)

// version and commit are stamped by scripts/release
// (-ldflags "-X main.version=... -X main.commit=...").
var (
	version = "dev"
	commit  = ""
)

func main() {
	build := control.BuildInfo{Version: version, Commit: commit}
	app := &cli.App{
		Name:  "zenith",
		Usage: "PostgreSQL with storage separated from compute",
		Description: "Zenith keeps PostgreSQL's durable state in a page server and a quorum of\n" +
			"safekeepers; the PostgreSQL servers (compute nodes) are stock PostgreSQL 15\n" +
			"and can be destroyed and recreated on any branch at any point in history.",
		Version:              version,
		Commands:             append(control.Commands(), control.VersionCommand(build)),
		EnableBashCompletion: true,
		HideHelpCommand:      true,
	}
	if err := app.Run(os.Args); err != nil {
		fmt.Fprintf(os.Stderr, "zenith: %v\n", err)
		var ec cli.ExitCoder
		if errors.As(err, &ec) {
			os.Exit(ec.ExitCode())
		}
		os.Exit(1)
	}
}
