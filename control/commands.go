package control

import "github.com/urfave/cli/v2"

// Commands returns the zenith subcommands, in the order --help lists them.
// A command is added here only once it works.
//
// Commands with the same name are merged into one whose subcommands are
// the union: a role's foreground command (`zenith pageserver run`, from
// pageserver_run.go; `zenith safekeeper run`, from safekeeper_run.go) is a
// `pageserver` or `safekeeper` command with a `run` subcommand, and the
// control plane's `pageserver start|stop|status` joins it under one name.
// Every command accepts flags after its arguments (allowFlagsAfterArgs).
func Commands() []*cli.Command {
	cmds := mergeCommands(
		InitCommand(),
		StartCommand(),
		StopCommand(),
		StatusCommand(),
		TenantCommand(),
		BranchCommand(),
		ImportCommand(),
		PgCommand(),
		PageserverCommand(),
		pageserverRunCommand(),
		SafekeeperCommand(),
		safekeeperRunCommand(),
		WaldumpCommand(),
		DoctorCommand(),
		TokenCommand(),
	)
	for _, c := range cmds {
		allowFlagsAfterArgs(c)
	}
	return cmds
}

// mergeCommands returns cmds with every group of same-named commands
// folded into the first of them: its subcommands gain the others'
// subcommands, and its usage and flags are kept, or taken from a later one
// when it has none.
func mergeCommands(cmds ...*cli.Command) []*cli.Command {
	var out []*cli.Command
	byName := map[string]*cli.Command{}
	for _, c := range cmds {
		first, ok := byName[c.Name]
		if !ok {
			byName[c.Name] = c
			out = append(out, c)
			continue
		}
		first.Subcommands = append(first.Subcommands, c.Subcommands...)
		if first.Usage == "" {
			first.Usage = c.Usage
		}
		if first.Description == "" {
			first.Description = c.Description
		}
	}
	return out
}
