package datadir

import (
	"cmp"
	"context"
	"slices"

	"github.com/zenithdb/zenith/repo/key"
)

// auxFiles returns the list of auxiliary files as of the open record.
func (w *DatadirWriter) auxFiles(ctx context.Context) (*AuxDir, error) {
	if w.auxDir == nil {
		d, err := load(ctx, w, key.AuxFile(AuxDirPath), DecodeAuxDirValue)
		if err != nil {
			return nil, err
		}
		w.auxDir = &d
	}
	return w.auxDir, nil
}

// AuxFileListed reports whether an auxiliary file is listed as of the
// open record.
func (w *DatadirWriter) AuxFileListed(ctx context.Context, path string) (bool, error) {
	d, err := w.auxFiles(ctx)
	if err != nil {
		return false, err
	}
	_, found := slices.BinarySearch(*d, path)
	return found, nil
}

// RemoveAuxFile unlists an auxiliary file (a dropped database's
// PG_VERSION); its value stays for reads at older LSNs.
func (w *DatadirWriter) RemoveAuxFile(ctx context.Context, path string) error {
	d, err := w.auxFiles(ctx)
	if err != nil {
		return err
	}
	if removeSorted((*[]string)(d), path, cmp.Compare[string]) {
		w.dirty[key.AuxFile(AuxDirPath)] = func() []byte { return EncodeAuxFile(AuxDirPath, EncodeAuxDir(*w.auxDir)) }
	}
	return nil
}

// PendingSize returns the size under k (a relation fork's or an SLRU
// segment's) set in the open record, if it set one.
func (w *DatadirWriter) PendingSize(k key.Key) (uint32, bool) {
	n, ok := w.sizes[k]
	return n, ok
}
