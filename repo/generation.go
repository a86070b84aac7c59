package repo

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/zenithdb/zenith/repo/vfs"
)

// Generation numbers an attachment of a tenant to a page server, as in
// Neon's RFC 025: the control plane gives every attachment a higher one
// and keeps the counter durably. Every object a page server uploads for
// a tenant carries its generation in its name, so two page servers that
// both believe they hold a tenant never write the same object; and a page
// server deletes remote objects only while no higher generation has been
// issued, so an older one can never remove what a newer one's index
// lists. Generation 0 is a tenant created without one (no control plane
// issued it): its object names carry no suffix.
type Generation uint32

// generationFile holds a tenant's generation in its directory; a tenant
// without it has generation 0.
const generationFile = "generation"

// remoteGenerationsDir holds, under a tenant's prefix, one empty marker
// object per generation ever attached: tenants/<id>/generations/<gen>.
const remoteGenerationsDir = "generations"

// ErrStaleGeneration: attaching a tenant with a generation lower than the
// one it holds here.
var ErrStaleGeneration = errors.New("generation is older than the tenant's")

// ErrInvalidGeneration: a generation of 0 given to attach.
var ErrInvalidGeneration = errors.New("invalid generation: attach needs 1 or more")

// suffix is what object names of generation g end with: "-%08x", none
// for generation 0.
func (g Generation) suffix() string {
	if g == 0 {
		return ""
	}
	return fmt.Sprintf("-%08x", uint32(g))
}

// String prints g in decimal.
func (g Generation) String() string { return strconv.FormatUint(uint64(g), 10) }

// ParseGeneration parses a decimal generation number.
func ParseGeneration(s string) (Generation, error) {
	n, err := strconv.ParseUint(s, 10, 32)
	if err != nil {
		return 0, fmt.Errorf("generation %q: want a decimal number", s)
	}
	return Generation(n), nil
}

// splitGeneration splits an object's base name into the name it stands
// for and its generation: "index.json-0000002a" is index.json of
// generation 42, a name without a suffix is of generation 0.
func splitGeneration(base string) (string, Generation) {
	i := len(base) - 9
	if i > 0 && base[i] == '-' {
		if n, err := strconv.ParseUint(base[i+1:], 16, 32); err == nil && strings.ToLower(base[i+1:]) == base[i+1:] {
			return base[:i], Generation(n)
		}
	}
	return base, 0
}

// latestObjects picks, among objects (paths under dir/, as List returns
// them), for each name directly in dir the object of the highest
// generation at or below gen: what the attachment of generation gen
// reads. It maps each name to its generation.
func latestObjects(objects []string, dir string, gen Generation) map[string]Generation {
	out := map[string]Generation{}
	for _, p := range objects {
		rest, ok := strings.CutPrefix(p, dir)
		if !ok || rest == "" || strings.Contains(rest, "/") {
			continue
		}
		name, g := splitGeneration(rest)
		if g > gen {
			continue
		}
		if old, ok := out[name]; !ok || g > old {
			out[name] = g
		}
	}
	return out
}

// readGeneration reads a tenant's generation from its directory.
func readGeneration(fsys vfs.FS, dir string) (Generation, error) {
	b, err := vfs.ReadFile(fsys, filepath.Join(dir, generationFile))
	if errors.Is(err, fs.ErrNotExist) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	g, err := ParseGeneration(string(bytes.TrimSpace(b)))
	if err != nil {
		return 0, &CorruptionError{File: filepath.Join(dir, generationFile), Offset: -1, Err: err}
	}
	return g, nil
}

// writeGeneration replaces a tenant's generation file durably.
func writeGeneration(fsys vfs.FS, dir string, g Generation) error {
	_, err := vfs.WriteFileAtomic(fsys, filepath.Join(dir, generationFile), []byte(g.String()+"\n"), 0o644)
	return err
}

// Generation is the generation of the tenant's attachment to this page
// server.
func (tn *Tenant) Generation() Generation { return Generation(tn.gen.Load()) }

// Generation is the generation of the attachment of the timeline's
// tenant to this page server.
func (tl *Timeline) Generation() Generation { return tl.tenant.Generation() }

// remoteGenerationPrefix is where a tenant's generation markers are.
func remoteGenerationPrefix(prefix string) string { return prefix + remoteGenerationsDir + "/" }

// publishGeneration uploads the marker of generation g of the tenant at
// prefix. It must be in remote storage before the attachment reads any
// index: a page server of an older generation that has not seen it yet
// uploaded its last index before, so the new one reads that index.
func (r *Repository) publishGeneration(ctx context.Context, prefix string, g Generation) error {
	return r.remote.Upload(ctx, remoteGenerationPrefix(prefix)+fmt.Sprintf("%08x", uint32(g)), bytes.NewReader(nil))
}

// newestGeneration returns the highest generation attached to the tenant
// at prefix, 0 if none was.
func (r *Repository) newestGeneration(ctx context.Context, prefix string) (Generation, error) {
	objects, err := r.remote.List(ctx, remoteGenerationPrefix(prefix))
	if err != nil {
		return 0, err
	}
	var newest Generation
	for _, p := range objects {
		n, err := strconv.ParseUint(strings.TrimPrefix(p, remoteGenerationPrefix(prefix)), 16, 32)
		if err == nil && Generation(n) > newest {
			newest = Generation(n)
		}
	}
	return newest, nil
}

// mayDelete reports whether this page server's attachment of the tenant
// may still delete remote objects: no higher generation was attached
// since. Once one was, the answer stays no (and is logged once): the
// objects it would delete are left for the newer attachment.
func (tn *Tenant) mayDelete(ctx context.Context) (bool, error) {
	if tn.stale.Load() {
		return false, nil
	}
	newest, err := tn.repo.newestGeneration(ctx, remoteTenantPrefix(tn.id))
	if err != nil {
		return false, err
	}
	if newest > tn.Generation() {
		tn.stale.Store(true)
		tn.log.Warn().Stringer("generation", tn.Generation()).Stringer("newer_generation", newest).
			Msg("a newer attachment of the tenant exists: this page server deletes nothing of it from remote storage")
		return false, nil
	}
	return true, nil
}
