package basebackup

import (
	"archive/tar"
	"bytes"
	"io"
	"os"
	osexec "os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/zenithdb/zenith/repo/pgdata"
)

// TestSparseTar writes files through tarball.sparse and reads them back
// with archive/tar and, if it is installed, GNU tar: the same bytes, and
// only the data (and the map) in the stream.
func TestSparseTar(t *testing.T) {
	page := func(fill byte) []byte { return bytes.Repeat([]byte{fill}, sparseMinHole) }
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	zero := page(0)
	for _, tc := range []struct {
		name      string
		data      []byte
		frags     int // fragments in the map, the final one of length 0 included
		streamMax int // most bytes of the entries (headers, map, data)
	}{
		{"empty", nil, 0, 1024},
		{"no hole", cat(page(1), page(2)), 0, 3*512 + 2*sparseMinHole},
		{"short tail", cat(page(1), zero[:100]), 0, 3*512 + 2*sparseMinHole},
		{"all zeros", cat(zero, zero, zero), 1, 5 * 512},
		{"data at start", cat(page(7), zero, zero), 2, 5*512 + sparseMinHole},
		{"data at end", cat(zero, zero, page(7)), 1, 5*512 + sparseMinHole},
		{"data at end, short", cat(zero, zero, []byte{1, 2, 3}), 1, 6 * 512},
		{"one byte mid-page", cat(zero, zero[:10], []byte{9}, zero[11:], zero), 2, 5*512 + sparseMinHole},
		{"holes between", cat(page(1), zero, page(2), page(3), zero, zero, page(4), zero), 4, 6*512 + 4*sparseMinHole},
		{"WAL segment", walSegment(t), 2, 6*512 + sparseMinHole},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if f := dataFragments(tc.data); tc.frags > 0 && len(f) != tc.frags {
				t.Errorf("%d fragments %v, want %d", len(f), f, tc.frags)
			}
			var buf bytes.Buffer
			tb := newTarball(&buf, time.Unix(1700000000, 0), nil)
			if err := tb.sparse("pg_wal/000000010000000000000001", tc.data); err != nil {
				t.Fatal(err)
			}
			if err := tb.bytes("pg_wal/after", []byte("next entry")); err != nil {
				t.Fatal(err)
			}
			entries := tb.cw.n
			if err := tb.close(); err != nil {
				t.Fatal(err)
			}
			// The pg_wal directory and the next entry's header and block.
			if max := int64(tc.streamMax + 3*512); entries > max {
				t.Errorf("%d bytes of entries for %d bytes of file, want at most %d", entries, len(tc.data), max)
			}
			got := readTar(t, buf.Bytes())
			if !bytes.Equal(got["pg_wal/000000010000000000000001"], tc.data) || string(got["pg_wal/after"]) != "next entry" {
				t.Errorf("archive/tar reads %d files back, the sparse one with %d bytes, not what was written (%d bytes)", len(got), len(got["pg_wal/000000010000000000000001"]), len(tc.data))
			}
			gnuTarCheck(t, buf.Bytes(), "pg_wal/000000010000000000000001", tc.data)
		})
	}
}

// walSegment is the WAL segment of a basebackup: 16 MiB, a page header
// and a checkpoint record in the middle.
func walSegment(t *testing.T) []byte {
	seg := make([]byte, 16<<20)
	copy(seg[7<<20+sparseMinHole*3:], bytes.Repeat([]byte{0xD1, 0x06}, 60))
	return seg
}

// readTar reads every regular file of a tar.
func readTar(t *testing.T, b []byte) map[string][]byte {
	t.Helper()
	files := map[string][]byte{}
	tr := tar.NewReader(bytes.NewReader(b))
	for {
		h, err := tr.Next()
		if err == io.EOF {
			return files
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag != tar.TypeReg {
			continue
		}
		data, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if int64(len(data)) != h.Size || h.Mode != fileMode {
			t.Errorf("%s: %d bytes read, header says %d, mode %o", h.Name, len(data), h.Size, h.Mode)
		}
		files[h.Name] = data
	}
}

// gnuTarCheck extracts the tar with GNU tar, if installed, and compares
// the file p with want.
func gnuTarCheck(t *testing.T, tarball []byte, p string, want []byte) {
	t.Helper()
	bin, err := osexec.LookPath("tar")
	if err != nil {
		t.Log("no tar installed: GNU tar not checked")
		return
	}
	dir := t.TempDir()
	cmd := osexec.Command(bin, "-x", "-f", "-", "-C", dir)
	cmd.Stdin = bytes.NewReader(tarball)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("tar -x: %v\n%s", err, out)
	}
	got, err := os.ReadFile(filepath.Join(dir, p))
	if err != nil || !bytes.Equal(got, want) {
		t.Errorf("GNU tar extracts %s as %d bytes (%v), want the %d written", p, len(got), err, len(want))
	}
}

// TestSparseWALSegments writes the WAL of real shutdown checkpoints, one
// in the middle of a segment and one that crosses into the next, as a
// basebackup does, and reads the segments back whole.
func TestSparseWALSegments(t *testing.T) {
	const segSize = 16 << 20
	for _, at := range []pgdata.LSN{0x5704430, 6*segSize - 24} {
		wal, err := pgdata.BuildShutdownCheckpointWAL(7000000000000000001, 1, segSize, at, at-0x40, pgdata.CheckPoint{ThisTimeLineID: 1, NextXid: 800})
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		tb := newTarball(&buf, time.Unix(1700000000, 0), nil)
		for _, f := range wal.Files {
			if err := tb.sparse("pg_wal/"+f.Name, f.Data); err != nil {
				t.Fatal(err)
			}
		}
		if err := tb.close(); err != nil {
			t.Fatal(err)
		}
		if max := len(wal.Files) * 4 * sparseMinHole; buf.Len() > max {
			t.Errorf("at %v: %d segments take %d bytes of tar, want at most %d", at, len(wal.Files), buf.Len(), max)
		}
		got := readTar(t, buf.Bytes())
		for _, f := range wal.Files {
			if !bytes.Equal(got["pg_wal/"+f.Name], f.Data) {
				t.Errorf("at %v: segment %s read back as %d bytes, not the %d written", at, f.Name, len(got["pg_wal/"+f.Name]), len(f.Data))
			}
			gnuTarCheck(t, buf.Bytes(), "pg_wal/"+f.Name, f.Data)
		}
		if at > 0x5704430 && len(wal.Files) != 2 {
			t.Errorf("at %v: the record is in %d segments, want it to cross into a second", at, len(wal.Files))
		}
	}
}
