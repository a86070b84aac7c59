package basebackup

import (
	"archive/tar"
	"context"
	"fmt"
	"path"

	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/tarfile"
)

// A basebackup is one tar, so a tablespace's files are in it under
// pg_tblspc/<OID>/PG_15_<catversion>/, and pg_tblspc/<OID> is a directory
// entry, never a symbolic link: a tar that anyone extracts never writes
// outside the directory it is extracted into (and PostgreSQL runs on it
// as it is, the tablespace then being in place). The original location
// belongs to the compute that created it and rides on the entry as the
// PAX record tarfile.TablespaceLocationKey; whoever extracts the tar
// decides where the tablespace lives now (zenith's compute nodes put it
// in the node's own directory and link pg_tblspc/<OID> to it:
// tarfile.ExtractBasebackup).

// tablespaces writes the directory of every tablespace other than
// pg_default and pg_global, pg_tblspc/<OID>/PG_15_<catversion>, which
// CREATE TABLESPACE makes (create_tablespace_directories), with the
// original location of one created with a LOCATION as a PAX record
// (tarfile.TablespaceLocationKey). It returns the tablespaces.
func (b *backup) tablespaces(ctx context.Context) (map[uint32]bool, error) {
	list, err := b.r.Tablespaces(ctx)
	if err != nil {
		return nil, err
	}
	oids := make(map[uint32]bool, len(list))
	for _, ts := range list {
		var pax map[string]string
		if !ts.InPlace() {
			pax = map[string]string{tarfile.TablespaceLocationKey: ts.Location}
		}
		if err := b.t.dirWithRecords(ts.Dir(), pax); err != nil {
			return nil, err
		}
		if err := b.t.dir(ts.VersionDir()); err != nil {
			return nil, err
		}
		oids[ts.OID] = true
	}
	return oids, nil
}

// checkTablespaces fails if a database directory is in a tablespace that
// is not listed: its files would land in a pg_tblspc entry that
// PostgreSQL's catalogs do not know.
func (b *backup) checkTablespaces(ctx context.Context, listed map[uint32]bool) error {
	dbs, err := b.r.Databases(ctx)
	if err != nil {
		return err
	}
	for _, db := range dbs {
		if db.SpcNode != pgdata.DefaultTablespaceOID && db.SpcNode != pgdata.GlobalTablespaceOID && !listed[db.SpcNode] {
			return fmt.Errorf("database %d has a directory in tablespace %d, which the tablespace list does not have", db.DbNode, db.SpcNode)
		}
	}
	return nil
}

// dirWithRecords writes the directory p, as dir does, with PAX records
// on its entry (none if records is empty). p's parents must be written
// already or have no records.
func (t *tarball) dirWithRecords(p string, records map[string]string) error {
	if len(records) == 0 {
		return t.dir(p)
	}
	if t.dirs[p] {
		return fmt.Errorf("write directory %s: written already, without its PAX records", p)
	}
	if err := t.dir(path.Dir(p)); err != nil {
		return err
	}
	t.dirs[p] = true
	h := &tar.Header{Typeflag: tar.TypeDir, Name: p + "/", Mode: dirMode, ModTime: t.modTime,
		PAXRecords: records, Format: tar.FormatPAX}
	if err := t.tw.WriteHeader(h); err != nil {
		return fmt.Errorf("write directory %s: %w", p, err)
	}
	return nil
}
