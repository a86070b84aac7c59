package control

import (
	"strings"

	"github.com/urfave/cli/v2"
)

// allowFlagsAfterArgs makes cmd and its subcommands accept flags after
// their positional arguments, as the CLI is documented (`zenith pg create
// main --port 55433`): Go's flag package, under urfave/cli, stops at the
// first argument that is not a flag and would leave the rest as arguments.
// When flags follow arguments, the command is run again with the flags
// first.
func allowFlagsAfterArgs(cmd *cli.Command) {
	for _, sub := range cmd.Subcommands {
		allowFlagsAfterArgs(sub)
	}
	action := cmd.Action
	if action == nil || cmd.SkipFlagParsing {
		return
	}
	rerun := false // set while the command runs again with its flags first
	cmd.Action = func(c *cli.Context) error {
		if rerun {
			return action(c)
		}
		flags, positional, dashes := splitFlags(cmd, c.Args().Slice())
		lineage := c.Lineage()
		if len(flags) == 0 && !dashes || len(lineage) < 2 {
			return action(c)
		}
		args := append(append([]string{cmd.Name}, flags...), "--")
		rerun = true
		defer func() { rerun = false }()
		return cmd.Run(lineage[1], append(args, positional...)...)
	}
}

// splitFlags separates the flags (with their values) in args from the
// positional arguments. Everything after "--" is positional; dashes
// reports whether there was one.
func splitFlags(cmd *cli.Command, args []string) (flags, positional []string, dashes bool) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return flags, append(positional, args[i+1:]...), true
		}
		if len(a) < 2 || a[0] != '-' {
			positional = append(positional, a)
			continue
		}
		flags = append(flags, a)
		name := strings.TrimLeft(a, "-")
		if strings.Contains(name, "=") || isBoolFlag(cmd, name) {
			continue
		}
		if i+1 < len(args) {
			i++
			flags = append(flags, args[i])
		}
	}
	return flags, positional, false
}

func isBoolFlag(cmd *cli.Command, name string) bool {
	for _, f := range cmd.Flags {
		for _, n := range f.Names() {
			if n == name {
				_, ok := f.(*cli.BoolFlag)
				return ok
			}
		}
	}
	// An unknown flag: the re-run's parser reports it.
	return true
}
