package control

import "github.com/urfave/cli/v2"

// Commands returns the zenith subcommands, in the order --help lists them.
// A command is added here only once it works.
func Commands() []*cli.Command {
	return []*cli.Command{
		WaldumpCommand(),
	}
}
