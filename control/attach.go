package control

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/urfave/cli/v2"

	"github.com/zenithdb/zenith/pageserver/api"
	"github.com/zenithdb/zenith/pgwire"
	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/vfs"
)

// AttachmentsFileName is the control plane's record of tenant
// attachments in the repository directory: for each tenant, the last
// generation it issued and whether the tenant is attached to the page
// server. It is the only source of generation numbers: a number is
// written here durably before any page server is told it.
const AttachmentsFileName = "attachments.json"

// attachment is what the control plane records of one tenant.
type attachment struct {
	// Generation is the last generation issued for the tenant.
	Generation uint32 `json:"generation"`
	// Attached is true while the tenant is attached to the page server.
	Attached bool `json:"attached"`
}

type attachmentsFile struct {
	Tenants map[string]attachment `json:"tenants"`
}

// updateAttachments runs f on the record of tenant attachments under an
// exclusive lock (two commands never issue the same generation) and
// writes what f leaves durably before returning.
func (e *Env) updateAttachments(f func(map[string]attachment) error) error {
	path := filepath.Join(e.Dir, AttachmentsFileName)
	lock, err := os.OpenFile(path+".lock", os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("attachments: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("attachments: lock %s: %w", path, err)
	}
	m, err := e.attachments()
	if err != nil {
		return err
	}
	if err := f(m); err != nil {
		return err
	}
	b, err := json.MarshalIndent(attachmentsFile{Tenants: m}, "", "  ")
	if err != nil {
		return err
	}
	if _, err := vfs.WriteFileAtomic(vfs.Default, path, append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("attachments: %w", err)
	}
	return nil
}

// attachments reads the record of tenant attachments (empty if there is
// none yet).
func (e *Env) attachments() (map[string]attachment, error) {
	path := filepath.Join(e.Dir, AttachmentsFileName)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return map[string]attachment{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("attachments: %w", err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.DisallowUnknownFields()
	var f attachmentsFile
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if f.Tenants == nil {
		f.Tenants = map[string]attachment{}
	}
	return f.Tenants, nil
}

// nextGeneration issues tenant t's next generation durably and records
// the tenant as attached.
func (e *Env) nextGeneration(t id.TenantID) (uint32, error) {
	var gen uint32
	err := e.updateAttachments(func(m map[string]attachment) error {
		a := m[t.String()]
		a.Generation++
		a.Attached = true
		m[t.String()] = a
		gen = a.Generation
		return nil
	})
	return gen, err
}

// setAttached records whether tenant t is attached.
func (e *Env) setAttached(t id.TenantID, attached bool) error {
	return e.updateAttachments(func(m map[string]attachment) error {
		a, ok := m[t.String()]
		if !ok && !attached {
			return nil
		}
		a.Attached = attached
		m[t.String()] = a
		return nil
	})
}

// createTenant creates tenant t (a fresh id when zero) on the page
// server at its first generation.
func (e *Env) createTenant(ctx context.Context, t id.TenantID) (id.TenantID, error) {
	if t.IsZero() {
		t = id.NewTenantID()
	}
	gen, err := e.nextGeneration(t)
	if err != nil {
		return t, err
	}
	got, err := e.Pageserver().TenantCreate(ctx, t, gen)
	if err != nil {
		// Not attached after all; the generation stays issued.
		if aerr := e.setAttached(t, false); aerr != nil {
			return t, errors.Join(err, aerr)
		}
	}
	return got, err
}

// AttachTenant attaches tenant t to the page server at a new generation:
// the page server restores it from remote storage (or, if it holds it,
// takes the new generation) and serves it. It returns the generation.
func (e *Env) AttachTenant(ctx context.Context, t id.TenantID) (AttachResult, error) {
	gen, err := e.nextGeneration(t)
	if err != nil {
		return AttachResult{}, err
	}
	e.announceGeneration(ctx, t, gen)
	start := time.Now()
	res, err := e.Pageserver().TenantAttach(ctx, t, gen)
	if err != nil {
		var pe *PageserverError
		if errors.As(err, &pe) && pe.Code == pgwire.CodeUndefinedObject {
			_ = e.setAttached(t, false)
			return res, fmt.Errorf("tenant %s is not in the page server's remote storage (zenith tenant list shows the tenants it serves): %w", t, err)
		}
		return res, err
	}
	res.Took = time.Since(start)
	e.pointWALSources(ctx, t)
	return res, nil
}

// announceGeneration tells the safekeepers, before the page server
// attaches tenant t at generation gen, that gen is coming: from then on
// they ignore the reports of older generations' page servers, which a
// stale page server (one that lost the tenant without knowing) still
// sends, and remove no WAL until the new page server reports what it
// holds. A safekeeper that cannot be told learns it from its peers or
// from the new page server's first report; the attach goes on.
func (e *Env) announceGeneration(ctx context.Context, t id.TenantID, gen uint32) {
	if e.Config.Safekeepers.Count == 0 {
		return
	}
	failed, err := e.safekeeperRequests(ctx, http.MethodPut, []string{fmt.Sprintf("/v1/tenant/%s/pageserver_generation/%d", t, gen)})
	if err == nil && len(failed) > 0 {
		err = fmt.Errorf("%d safekeepers not told:\n%s", len(failed), strings.Join(failed, "\n"))
	}
	if err != nil {
		fmt.Fprintf(e.Progress, "tenant %s: announcing generation %d to the safekeepers: %v\n", t, gen, err)
	}
}

// pointWALSources tells the page server, after it attached tenant t,
// where the WAL of t's writable nodes comes from: the page server keeps
// that in its local directory, which an attach after a disk loss does
// not have. Without it the page server would not ingest what remote
// storage lacks until each node's next start, and a running compute's
// reads and clean stop would wait for it. With safekeepers, every such
// node's timeline streams from them (a stopped node's last WAL may be
// there and nowhere else); without, a running node is the source again.
// A failure is reported, not returned: the tenant is attached, and the
// node's next start points the page server again.
func (e *Env) pointWALSources(ctx context.Context, t id.TenantID) {
	nodes, err := e.nodes(&t)
	if err != nil {
		fmt.Fprintf(e.Progress, "tenant %s: cannot list its compute nodes to point the page server at their WAL: %v\n", t, err)
		return
	}
	done := map[id.TimelineID]bool{}
	for _, n := range nodes {
		if !n.Writes() || done[n.Timeline] {
			continue
		}
		if e.Config.Safekeepers.Count > 0 {
			err = e.Pageserver().Safekeepers(ctx, t, n.Timeline, e.safekeeperAddrs())
		} else if st, serr := n.Status(ctx, e); serr != nil || st != "running" {
			continue
		} else {
			err = e.Pageserver().CallMeMaybe(ctx, t, n.Timeline, n.walSource(e))
		}
		if err != nil {
			fmt.Fprintf(e.Progress, "compute node %s: cannot point the page server at its WAL (its next start does): %v\n", n.Name, err)
			continue
		}
		done[n.Timeline] = true
	}
}

// DetachTenant detaches tenant t from the page server: it uploads all it
// holds of it to remote storage and removes its local copy. Running
// compute nodes of the tenant make it fail unless force (then they are
// destroyed); stopped nodes stay, for after the next attach.
func (e *Env) DetachTenant(ctx context.Context, t id.TenantID, force bool) error {
	if _, err := e.nodesOf(ctx, t, func(*Node) bool { return true }, force,
		fmt.Sprintf("zenith tenant detach %s --force", t)); err != nil {
		return err
	}
	if err := e.Pageserver().TenantDetach(ctx, t); err != nil {
		var pe *PageserverError
		if errors.As(err, &pe) && pe.Code == pgwire.CodeUndefinedObject {
			return fmt.Errorf("the page server does not hold tenant %s (zenith tenant list shows the tenants): %w", t, err)
		}
		return err
	}
	return e.setAttached(t, false)
}

// reattach attaches, at new generations, the tenants the control plane
// has attached to the page server but the page server does not hold:
// those of a page server that lost its disk. A tenant that cannot be
// attached is reported and skipped.
func (e *Env) reattach(ctx context.Context) error {
	m, err := e.attachments()
	if err != nil {
		return err
	}
	held, err := e.Pageserver().TenantList(ctx)
	if err != nil {
		return err
	}
	var ids []string
	for s, a := range m {
		if a.Attached {
			ids = append(ids, s)
		}
	}
	slices.Sort(ids)
	for _, s := range ids {
		t, err := id.ParseTenantID(s)
		if err != nil {
			return fmt.Errorf("%s: tenant %q: %w", AttachmentsFileName, s, err)
		}
		if slices.Contains(held, t) {
			continue
		}
		res, err := e.AttachTenant(ctx, t)
		if err != nil {
			// The page server runs; the other tenants still come back.
			fmt.Fprintf(e.Progress, "cannot re-attach tenant %s (zenith tenant attach %s tries again): %v\n", t, t, err)
			continue
		}
		fmt.Fprintf(e.Progress, "re-attached tenant %s from remote storage (generation %d, %s)\n", t, res.Generation, res.timelines())
	}
	return nil
}

// AttachResult is what an attach answers.
type AttachResult struct {
	Generation uint32
	Timelines  int
	Took       time.Duration
}

// timelines says how many timelines the attach found.
func (r AttachResult) timelines() string {
	if r.Timelines == 1 {
		return "1 timeline"
	}
	return fmt.Sprintf("%d timelines", r.Timelines)
}

// tenantAttachCommand is `zenith tenant attach ID`.
func tenantAttachCommand() *cli.Command {
	return &cli.Command{
		Name:      "attach",
		Usage:     "attach a tenant from remote storage to the page server",
		ArgsUsage: "ID",
		Description: `Attaches tenant ID to the page server at a new generation: the page server
downloads the tenant's newest index and layer files from its remote storage
and serves it (a tenant it holds already just takes the new generation).
Every attach takes a higher generation, recorded in the repository's
` + AttachmentsFileName + ` before the page server hears of it; objects in remote
storage carry it, and a page server holding an older one can no longer
delete what a newer one uploaded. zenith start re-attaches, by itself, the
tenants a page server that lost its disk should hold.

Examples:
  zenith tenant detach 0123456789abcdef0123456789abcdef
  zenith tenant attach 0123456789abcdef0123456789abcdef`,
		Action: func(c *cli.Context) error {
			t, e, err := tenantArg(c, "attach")
			if err != nil {
				return err
			}
			res, err := e.AttachTenant(c.Context, t)
			if err != nil {
				return err
			}
			fmt.Fprintf(e.Out, "attached tenant %s at generation %d (%s) in %s\n", t, res.Generation, res.timelines(), res.Took.Round(time.Millisecond))
			return nil
		},
	}
}

// tenantDetachCommand is `zenith tenant detach ID`.
func tenantDetachCommand() *cli.Command {
	return &cli.Command{
		Name:      "detach",
		Usage:     "upload a tenant to remote storage and remove it from the page server",
		ArgsUsage: "ID",
		Description: `Detaches tenant ID from the page server: it stops taking WAL for it, flushes
and uploads everything it holds of it to remote storage, and removes its
local copy; if the upload fails the tenant stays attached. zenith tenant
attach ID brings it back, on this page server or on another one on the
same remote storage. Compute nodes running on the tenant make the detach
fail unless --force, which destroys them; stopped nodes stay.

Examples:
  zenith tenant detach 0123456789abcdef0123456789abcdef
  zenith tenant detach 0123456789abcdef0123456789abcdef --force`,
		Flags: []cli.Flag{&cli.BoolFlag{Name: "force", Usage: "destroy the tenant's running compute nodes first"}},
		Action: func(c *cli.Context) error {
			t, e, err := tenantArg(c, "detach")
			if err != nil {
				return err
			}
			if err := e.DetachTenant(c.Context, t, c.Bool("force")); err != nil {
				return err
			}
			fmt.Fprintf(e.Out, "detached tenant %s: it is in remote storage (zenith tenant attach %s brings it back)\n", t, t)
			return nil
		},
	}
}

// tenantArg parses the one tenant ID of tenant subcommand verb.
func tenantArg(c *cli.Context, verb string) (id.TenantID, *Env, error) {
	if c.NArg() != 1 {
		return id.TenantID{}, nil, fmt.Errorf("tenant %s takes one ID (see zenith tenant %s --help)", verb, verb)
	}
	t, err := id.ParseTenantID(c.Args().First())
	if err != nil {
		return t, nil, fmt.Errorf("%w: want 32 hexadecimal characters (zenith tenant list shows them)", err)
	}
	e, err := openEnv(c)
	return t, e, err
}

// TenantAttach attaches tenant t at generation gen.
func (c *PageserverClient) TenantAttach(ctx context.Context, t id.TenantID, gen uint32) (AttachResult, error) {
	rows, err := c.query(ctx, api.TenantAttach{Tenant: t, Generation: gen}.String())
	if err != nil {
		return AttachResult{}, err
	}
	if len(rows) != 1 {
		return AttachResult{}, fmt.Errorf("tenant_attach: %d rows, want 1", len(rows))
	}
	g, err := strconv.ParseUint(rows[0]["generation"], 10, 32)
	if err != nil {
		return AttachResult{}, fmt.Errorf("tenant_attach: generation %q", rows[0]["generation"])
	}
	n, err := strconv.Atoi(strings.TrimSpace(rows[0]["timelines"]))
	if err != nil {
		return AttachResult{}, fmt.Errorf("tenant_attach: timelines %q", rows[0]["timelines"])
	}
	return AttachResult{Generation: uint32(g), Timelines: n}, nil
}

// TenantDetach detaches tenant t.
func (c *PageserverClient) TenantDetach(ctx context.Context, t id.TenantID) error {
	_, err := c.query(ctx, api.TenantDetach{Tenant: t}.String())
	return err
}
