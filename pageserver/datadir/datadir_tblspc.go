package datadir

import (
	"cmp"
	"context"
	"encoding/binary"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// Tablespaces other than pg_default and pg_global are listed, with the
// location each was created at, under key.TablespaceDir: CREATE
// TABLESPACE adds one (XLOG_TBLSPC_CREATE), DROP TABLESPACE removes it and
// every database directory in it (XLOG_TBLSPC_DROP). Like every directory
// value the list is versioned by LSN, so a basebackup or branch at any
// LSN sees the tablespaces that existed then.
//
// The encoding: magic 'P', version, the count (4 bytes), then per
// tablespace, in ascending OID order, its OID (4 bytes), the length of its
// location (2 bytes) and the location; integers big-endian. An empty
// location is an in-place tablespace (allow_in_place_tablespaces).

const dirMagicTablespace = 'P'

// Tablespace is one tablespace of the data directory.
type Tablespace struct {
	OID uint32
	// Location is the absolute directory CREATE TABLESPACE ... LOCATION
	// named on the compute that ran it, or "" for an in-place tablespace,
	// whose directory is pg_tblspc/<OID> itself.
	Location string
}

// InPlace reports whether the tablespace's directory is inside the data
// directory.
func (ts Tablespace) InPlace() bool { return ts.Location == "" }

// Dir is the tablespace's directory in a data directory: pg_tblspc/<OID>,
// a symbolic link to Location unless the tablespace is in place.
func (ts Tablespace) Dir() string { return "pg_tblspc/" + strconv.FormatUint(uint64(ts.OID), 10) }

// VersionDir is the directory PostgreSQL 15 keeps a tablespace's
// databases in: pg_tblspc/<OID>/PG_15_<catversion>
// (TABLESPACE_VERSION_DIRECTORY).
func (ts Tablespace) VersionDir() string { return ts.Dir() + "/" + pgdata.TablespaceVersionDirectory }

// TablespaceDir is the list of tablespaces, sorted by OID.
type TablespaceDir []Tablespace

func compareTablespace(a, b Tablespace) int { return cmp.Compare(a.OID, b.OID) }

// checkTablespace rejects what CREATE TABLESPACE cannot have made.
func checkTablespace(ts Tablespace) error {
	switch {
	case ts.OID == 0 || ts.OID == pgdata.DefaultTablespaceOID || ts.OID == pgdata.GlobalTablespaceOID:
		return fmt.Errorf("tablespace OID %d", ts.OID)
	case len(ts.Location) > pgdata.MaxTablespaceLocation || strings.ContainsRune(ts.Location, 0):
		return fmt.Errorf("tablespace %d: location of %d bytes is too long or holds a NUL", ts.OID, len(ts.Location))
	case ts.Location != "" && !strings.HasPrefix(ts.Location, "/"):
		return fmt.Errorf("tablespace %d: location %q is not an absolute path", ts.OID, ts.Location)
	}
	return nil
}

// EncodeTablespaceDir encodes d, which must be sorted by OID without
// duplicates (as the DatadirWriter keeps it).
func EncodeTablespaceDir(d TablespaceDir) []byte {
	b := []byte{dirMagicTablespace, dirVersion}
	b = binary.BigEndian.AppendUint32(b, uint32(len(d)))
	for _, ts := range d {
		b = binary.BigEndian.AppendUint32(b, ts.OID)
		b = binary.BigEndian.AppendUint16(b, uint16(len(ts.Location)))
		b = append(b, ts.Location...)
	}
	return b
}

// DecodeTablespaceDir decodes a value written by EncodeTablespaceDir;
// entries out of order, duplicated, or that CREATE TABLESPACE cannot have
// made (a built-in OID, a relative location) are errors.
func DecodeTablespaceDir(b []byte) (TablespaceDir, error) {
	if len(b) < dirHeaderSize || b[0] != dirMagicTablespace || b[1] != dirVersion {
		return nil, fmt.Errorf("%w: tablespace directory: bad header", ErrMalformedDir)
	}
	n := binary.BigEndian.Uint32(b[2:])
	rest := b[dirHeaderSize:]
	if uint64(n)*6 > uint64(len(rest)) {
		return nil, fmt.Errorf("%w: tablespace directory: %d entries in %d bytes", ErrMalformedDir, n, len(rest))
	}
	d := make(TablespaceDir, 0, n)
	for i := range n {
		if len(rest) < 6 {
			return nil, fmt.Errorf("%w: tablespace directory: entry %d truncated", ErrMalformedDir, i)
		}
		l := int(binary.BigEndian.Uint16(rest[4:]))
		if len(rest) < 6+l {
			return nil, fmt.Errorf("%w: tablespace directory: entry %d truncated", ErrMalformedDir, i)
		}
		ts := Tablespace{OID: binary.BigEndian.Uint32(rest), Location: string(rest[6 : 6+l])}
		if err := checkTablespace(ts); err != nil {
			return nil, fmt.Errorf("%w: tablespace directory: %v", ErrMalformedDir, err)
		}
		if len(d) > 0 && d[len(d)-1].OID >= ts.OID {
			return nil, fmt.Errorf("%w: tablespace directory: entry %d is not after entry %d", ErrMalformedDir, i, i-1)
		}
		d = append(d, ts)
		rest = rest[6+l:]
	}
	if len(rest) != 0 {
		return nil, fmt.Errorf("%w: tablespace directory: %d bytes after the last entry", ErrMalformedDir, len(rest))
	}
	return d, nil
}

func (w *DatadirWriter) tablespaces(ctx context.Context) (*TablespaceDir, error) {
	if w.tblspcDir == nil {
		d, err := load(ctx, w, key.TablespaceDir(), DecodeTablespaceDir)
		if err != nil {
			return nil, err
		}
		w.tblspcDir = &d
	}
	return w.tblspcDir, nil
}

// CreateTablespace lists a tablespace (CREATE TABLESPACE). A tablespace
// already listed under the OID gets the new location: redo of a
// creation replaces whatever pg_tblspc/<OID> was.
func (w *DatadirWriter) CreateTablespace(ctx context.Context, ts Tablespace) error {
	if err := checkTablespace(ts); err != nil {
		return fmt.Errorf("create tablespace: %w", err)
	}
	d, err := w.tablespaces(ctx)
	if err != nil {
		return err
	}
	i, found := slices.BinarySearchFunc(*d, ts, compareTablespace)
	switch {
	case found && (*d)[i] == ts:
		return nil
	case found:
		(*d)[i] = ts
	default:
		*d = slices.Insert(*d, i, ts)
	}
	w.dirty[key.TablespaceDir()] = func() []byte { return EncodeTablespaceDir(*w.tblspcDir) }
	return nil
}

// DropTablespace unlists a tablespace and drops every database directory
// in it with whatever relations they still list (DROP TABLESPACE, which
// PostgreSQL allows only once they hold nothing, and whose redo removes
// the directories: destroy_tablespace_directories).
func (w *DatadirWriter) DropTablespace(ctx context.Context, oid uint32) error {
	d, err := w.tablespaces(ctx)
	if err != nil {
		return err
	}
	if removeSorted((*[]Tablespace)(d), Tablespace{OID: oid}, compareTablespace) {
		w.dirty[key.TablespaceDir()] = func() []byte { return EncodeTablespaceDir(*w.tblspcDir) }
	}
	dbs, err := w.Databases(ctx)
	if err != nil {
		return err
	}
	for _, db := range dbs {
		if db.SpcNode != oid {
			continue
		}
		if err := w.DropDatabase(ctx, db); err != nil {
			return err
		}
		if err := w.RemoveAuxFile(ctx, DatabaseVersionPath(db)); err != nil {
			return err
		}
	}
	return nil
}

// Tablespaces returns the tablespaces as of the open record.
func (w *DatadirWriter) Tablespaces(ctx context.Context) (TablespaceDir, error) {
	d, err := w.tablespaces(ctx)
	if err != nil {
		return nil, err
	}
	return slices.Clone(*d), nil
}

// Tablespaces lists the tablespaces other than pg_default and pg_global.
func (r *DatadirReader) Tablespaces(ctx context.Context) (TablespaceDir, error) {
	return readDir(ctx, r, key.TablespaceDir(), DecodeTablespaceDir)
}
