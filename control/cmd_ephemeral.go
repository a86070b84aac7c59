package control

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"time"

	"github.com/urfave/cli/v2"
)

// ephemeralPrefix starts the names --ephemeral makes up.
const ephemeralPrefix = "ephemeral-"

// ephemeralFlag is pg start's --ephemeral.
func ephemeralFlag() cli.Flag {
	return &cli.BoolFlag{Name: "ephemeral", Usage: "a throwaway database (for a CI job): a new branch from BRANCH[@LSN|@TIME] " +
		"named --name or " + ephemeralPrefix + "RANDOM, and a compute node on it; zenith pg stop NAME --destroy --immediate throws it away"}
}

// startEphemeral is `zenith pg start BRANCH --ephemeral`: it creates a
// branch from BRANCH at its end (or at @LSN / @TIME), creates and starts
// a compute node of the same name on it, and prints the connection
// string. Creating a branch writes only metadata, so this costs a
// basebackup and a PostgreSQL start, whatever the size of the data.
//
// Zenith cannot delete branches yet: throwing the database away
// (zenith pg stop NAME --destroy) removes the node, its data directory and
// its processes; the branch stays in the page server, holding the WAL the
// job wrote.
func startEphemeral(c *cli.Context) error {
	if c.NArg() != 1 {
		return fmt.Errorf("pg start --ephemeral takes one BRANCH to start from (see zenith pg start --help)")
	}
	if c.String("lsn") != "" {
		return fmt.Errorf("--ephemeral makes a writable branch: give its start point as BRANCH@LSN, not --lsn")
	}
	if c.Bool("replica") {
		return fmt.Errorf("--ephemeral makes a writable branch and its primary: start a replica of it afterwards with zenith pg start NAME --replica")
	}
	e, t, err := openTenant(c)
	if err != nil {
		return err
	}
	name := c.String("name")
	if name == "" {
		var b [4]byte
		if _, err := rand.Read(b[:]); err != nil {
			return fmt.Errorf("ephemeral name: %w", err)
		}
		name = ephemeralPrefix + hex.EncodeToString(b[:])
	}
	from := c.Args().First()
	start := time.Now()
	br, err := e.CreateBranch(c.Context, t, name, from)
	if err != nil {
		return fmt.Errorf("ephemeral branch from %s: %w", from, err)
	}
	o, err := nodeOptions(c, t, name)
	if err != nil {
		return err
	}
	n, err := e.CreateNode(c.Context, o)
	if err == nil {
		if err = e.StartNode(c.Context, n, o.Eager); err != nil {
			stopCtx, cancel := context.WithTimeout(context.Background(), daemonStopTimeout)
			if derr := e.DestroyNode(stopCtx, n, true); derr != nil {
				err = errors.Join(err, fmt.Errorf("remove the node again: %w", derr))
			}
			cancel()
		}
	}
	if err != nil {
		return fmt.Errorf("ephemeral node on branch %s (the branch stays: zenith cannot delete branches yet): %w", name, err)
	}
	fmt.Fprintf(e.Progress, "ephemeral database %s: branch %s from %s at %s, compute node %s, ready in %v\n",
		name, name, from, br.AncestorLSN, n.Name, time.Since(start).Round(time.Millisecond))
	fmt.Fprintf(e.Progress, "throw it away with: zenith pg stop %s --destroy --immediate (the branch %s stays in the page server: zenith cannot delete branches yet)\n",
		n.Name, name)
	fmt.Fprintln(e.Out, n.ConnString(e))
	return nil
}
