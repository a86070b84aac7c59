package control

import (
	"context"
	"errors"
	"fmt"
	"io"
	"text/tabwriter"
	"time"

	"github.com/dustin/go-humanize"
	"github.com/urfave/cli/v2"

	"github.com/zenithdb/zenith/pageserver/api"
	"github.com/zenithdb/zenith/pgwire"
	"github.com/zenithdb/zenith/repo/id"
)

// tenantConfigCommand is `zenith tenant config [ID] [--pitr D] [--gc-horizon SIZE]`.
func tenantConfigCommand() *cli.Command {
	return &cli.Command{
		Name:      "config",
		Usage:     "show or change a tenant's retention (PITR window, GC horizon)",
		ArgsUsage: "[ID]",
		Description: `Shows the settings of tenant ID (default: the repository's default tenant)
and each branch's GC cut-off, the oldest LSN it can still be read or branched
at. --pitr and --gc-horizon change how much history garbage collection keeps:
it keeps what is younger than the PITR window, and at least the last
gc-horizon bytes of WAL; the cut-off is the older of the two. Lengthening
them keeps what is still there; it cannot bring back what GC removed.

--pitr takes a duration: 30m, 24h, 168h (7 days), 0s for none.
--gc-horizon takes a size: 64MiB, 1GiB (powers of 1024), 1GB (of 1000), or
bytes.

Examples:
  zenith tenant config
  zenith tenant config --pitr 24h --gc-horizon 1GiB
  zenith tenant config 0123456789abcdef0123456789abcdef --pitr 0s --json`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "pitr", Usage: "keep `DURATION` of history for point-in-time branches"},
			&cli.StringFlag{Name: "gc-horizon", Usage: "keep at least `SIZE` of WAL history below each branch's end"},
			&cli.BoolFlag{Name: "json", Usage: "print JSON"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() > 1 {
				return fmt.Errorf("tenant config takes at most one ID (see zenith tenant config --help)")
			}
			e, err := openEnv(c)
			if err != nil {
				return err
			}
			t := e.Config.DefaultTenant
			if c.NArg() == 1 {
				if t, err = id.ParseTenantID(c.Args().First()); err != nil {
					return fmt.Errorf("%w: want 32 hexadecimal characters (zenith tenant list shows them)", err)
				}
			}
			change, err := retentionChange(c.String("pitr"), c.String("gc-horizon"))
			if err != nil {
				return err
			}
			settings, err := e.Pageserver().TenantConfig(c.Context, t, change)
			if err != nil {
				var pe *PageserverError
				if errors.As(err, &pe) && pe.Code == pgwire.CodeUndefinedObject {
					return fmt.Errorf("unknown tenant %s (zenith tenant list shows the tenants): %w", t, err)
				}
				return err
			}
			branches, err := e.Pageserver().BranchList(c.Context, t)
			if err != nil {
				return err
			}
			if c.Bool("json") {
				cutoffs := map[string]string{}
				for _, b := range branches {
					cutoffs[b.Name] = b.GCCutoffLSN.String()
				}
				return writeJSON(e.Out, map[string]any{"tenant_id": t, "settings": settings, "gc_cutoff_lsn": cutoffs})
			}
			return printTenantConfig(e.Out, t, settings, branches)
		},
	}
}

// retentionChange parses the CLI's --pitr and --gc-horizon ("" for
// unchanged) into a change for the page server.
func retentionChange(pitr, horizon string) (api.RetentionChange, error) {
	var change api.RetentionChange
	if pitr != "" {
		d, err := time.ParseDuration(pitr)
		if err != nil || d < 0 {
			return change, fmt.Errorf("--pitr %q: want a duration such as 30m, 24h or 168h (0s for none)", pitr)
		}
		change.PITRInterval = &d
	}
	if horizon != "" {
		n, err := humanize.ParseBytes(horizon)
		if err != nil || n > 1<<62 {
			return change, fmt.Errorf("--gc-horizon %q: want a size such as 64MiB, 1GiB or 1GB", horizon)
		}
		b := int64(n)
		change.GCHorizon = &b
	}
	return change, nil
}

// printTenantConfig prints a tenant's settings, sizes in binary units
// with the exact bytes, then each branch's GC cut-off.
func printTenantConfig(w io.Writer, t id.TenantID, settings []api.TenantSetting, branches []api.BranchInfo) error {
	fmt.Fprintf(w, "tenant %s\n", t)
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	for _, s := range settings {
		v := s.Value
		if bytesSettings[s.Name] {
			var n int64
			if _, err := fmt.Sscan(v, &n); err == nil {
				v = fmt.Sprintf("%s (%d bytes)", formatBytes(n), n)
			}
		}
		fmt.Fprintf(tw, "  %s\t%s\n", s.Name, v)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	fmt.Fprintln(w, "GC cut-off (the oldest LSN each branch can be read or branched at):")
	for _, b := range branches {
		fmt.Fprintf(tw, "  %s\t%s\n", b.Name, b.GCCutoffLSN)
	}
	return tw.Flush()
}

// bytesSettings are the tenant settings that are sizes in bytes.
var bytesSettings = map[string]bool{"checkpoint_distance": true, "compaction_target_size": true, api.SettingGCHorizon: true}

// TenantConfig applies change (none: just show) to tenant t's settings and
// returns them all.
func (c *PageserverClient) TenantConfig(ctx context.Context, t id.TenantID, change api.RetentionChange) ([]api.TenantSetting, error) {
	rows, err := c.query(ctx, api.TenantConfig{Tenant: t, Change: change}.String())
	if err != nil {
		return nil, err
	}
	out := make([]api.TenantSetting, 0, len(rows))
	for _, r := range rows {
		out = append(out, api.TenantSetting{Name: r["setting"], Value: r["value"]})
	}
	return out, nil
}
