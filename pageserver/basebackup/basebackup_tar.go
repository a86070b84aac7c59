package basebackup

import (
	"archive/tar"
	"bytes"
	"fmt"
	"io"
	"path"
	"strconv"
	"time"
)

// Modes of a basebackup's entries: PostgreSQL wants its data directory
// private to its OS user (pg_dir_create_mode, pg_file_create_mode). Owners
// are left 0: the compute that unpacks the tar gives the files to the
// server's OS user.
const (
	dirMode  = 0o700
	fileMode = 0o600
)

// tarball writes a data directory as a tar stream: each directory once,
// before anything in it, and files of a size known in advance.
type tarball struct {
	tw       *tar.Writer
	cw       *countingWriter
	modTime  time.Time
	dirs     map[string]bool
	progress func(bytes int64)
}

// countingWriter counts the bytes written through it.
type countingWriter struct {
	w io.Writer
	n int64
}

func (c *countingWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

func newTarball(w io.Writer, modTime time.Time, progress func(int64)) *tarball {
	cw := &countingWriter{w: w}
	return &tarball{tw: tar.NewWriter(cw), cw: cw, modTime: modTime, dirs: map[string]bool{}, progress: progress}
}

// dir writes the directory p (slash-separated, relative to the data
// directory) and its parents, unless already written.
func (t *tarball) dir(p string) error {
	if p == "." || p == "" || t.dirs[p] {
		return nil
	}
	if err := t.dir(path.Dir(p)); err != nil {
		return err
	}
	t.dirs[p] = true
	h := &tar.Header{Typeflag: tar.TypeDir, Name: p + "/", Mode: dirMode, ModTime: t.modTime}
	if err := t.tw.WriteHeader(h); err != nil {
		return fmt.Errorf("write directory %s: %w", p, err)
	}
	return nil
}

// file writes the file p of size bytes, whose contents write produces
// (exactly size bytes, or the tar stream reports the difference).
func (t *tarball) file(p string, size int64, write func(w io.Writer) error) error {
	if err := t.dir(path.Dir(p)); err != nil {
		return err
	}
	return t.entry(p, &tar.Header{Typeflag: tar.TypeReg, Name: p, Size: size, Mode: fileMode, ModTime: t.modTime}, write)
}

// entry writes the entry of header h for the file p (the name errors
// give), whose contents write produces.
func (t *tarball) entry(p string, h *tar.Header, write func(w io.Writer) error) error {
	if err := t.tw.WriteHeader(h); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	if err := write(t.tw); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	// Flush checks that exactly size bytes were written.
	if err := t.tw.Flush(); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	if t.progress != nil {
		t.progress(t.cw.n)
	}
	return nil
}

// bytes writes the file p with contents b.
func (t *tarball) bytes(p string, b []byte) error {
	return t.file(p, int64(len(b)), func(w io.Writer) error {
		_, err := w.Write(b)
		return err
	})
}

// close ends the tar stream (its two zero blocks).
func (t *tarball) close() error {
	if err := t.tw.Close(); err != nil {
		return fmt.Errorf("finish tar stream: %w", err)
	}
	if t.progress != nil {
		t.progress(t.cw.n)
	}
	return nil
}

// sparseMinHole is the smallest run of zeros sparse leaves out of the
// stream: a WAL page, which is how the zeros of a WAL segment come.
const sparseMinHole = 8192

// sparse writes the file p with contents b as a sparse file (PAX format
// 1.0 of GNU tar: a sparse map, then only the data, see
// https://www.gnu.org/software/tar/manual/html_section/Sparse-Formats.html):
// the runs of sparseMinHole zero bytes or more, aligned to it, are not in
// the stream. Go's archive/tar and GNU tar read it back as b; the
// basebackup's 16 MiB WAL segment, zeros but for its checkpoint record,
// takes a few KiB instead of 16 MiB to send and to read. A b without such
// a run is written as a plain file.
func (t *tarball) sparse(p string, b []byte) error {
	frags := dataFragments(b)
	if len(frags) == 1 && frags[0] == [2]int64{0, int64(len(b))} {
		return t.bytes(p, b)
	}
	if err := t.dir(path.Dir(p)); err != nil {
		return err
	}
	var sparseMap []byte
	sparseMap = strconv.AppendInt(sparseMap, int64(len(frags)), 10)
	sparseMap = append(sparseMap, '\n')
	var size int64
	for _, f := range frags {
		sparseMap = strconv.AppendInt(sparseMap, f[0], 10)
		sparseMap = append(sparseMap, '\n')
		sparseMap = strconv.AppendInt(sparseMap, f[1], 10)
		sparseMap = append(sparseMap, '\n')
		size += f[1]
	}
	sparseMap = append(sparseMap, make([]byte, blockPadding(len(sparseMap)))...)
	dir, file := path.Split(p)
	// archive/tar's Writer drops GNU.sparse records (golang.org/issue/22735):
	// the extended header is written here, and the entry it describes
	// must have none of its own (USTAR).
	var records []byte
	for _, r := range [][2]string{
		{"GNU.sparse.major", "1"},
		{"GNU.sparse.minor", "0"},
		{"GNU.sparse.name", p},
		{"GNU.sparse.realsize", strconv.Itoa(len(b))},
	} {
		records = append(records, paxRecord(r[0], r[1])...)
	}
	hdr, err := ustarHeader(dir+"PaxHeaders.0/"+file, 'x', int64(len(records)), t.modTime)
	if err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	records = append(records, make([]byte, blockPadding(len(records)))...)
	if _, err := t.cw.Write(append(hdr, records...)); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	h := &tar.Header{Typeflag: tar.TypeReg, Name: dir + "GNUSparseFile.0/" + file, Size: int64(len(sparseMap)) + size,
		Mode: fileMode, ModTime: t.modTime, Format: tar.FormatUSTAR}
	return t.entry(p, h, func(w io.Writer) error {
		if _, err := w.Write(sparseMap); err != nil {
			return err
		}
		for _, f := range frags {
			if _, err := w.Write(b[f[0] : f[0]+f[1]]); err != nil {
				return err
			}
		}
		return nil
	})
}

// dataFragments returns the parts of b that are not in a run of zeros
// aligned to sparseMinHole and at least that long, as {offset, length},
// in order.
// A b that ends in such a run gets a last fragment of length 0 at its
// end, as GNU tar writes, so the map says where the file ends.
func dataFragments(b []byte) [][2]int64 {
	const hole = sparseMinHole
	var frags [][2]int64
	start := -1 // of the current fragment
	for off := 0; off < len(b); off += hole {
		end := min(off+hole, len(b))
		zero := end-off == hole && allZero(b[off:end])
		switch {
		case !zero && start < 0:
			start = off
		case zero && start >= 0:
			frags = append(frags, [2]int64{int64(start), int64(off - start)})
			start = -1
		}
	}
	if start >= 0 {
		return append(frags, [2]int64{int64(start), int64(len(b) - start)})
	}
	return append(frags, [2]int64{int64(len(b)), 0})
}

// zeroHole is a run of zeros to compare with: bytes.Equal is many times
// faster than a loop over the bytes.
var zeroHole = make([]byte, sparseMinHole)

// allZero reports whether b, at most sparseMinHole long, is all zeros.
func allZero(b []byte) bool { return bytes.Equal(b, zeroHole[:len(b)]) }

// blockPadding is how many bytes pad n bytes to the tar block size.
func blockPadding(n int) int { return -n & 511 }

// paxRecord encodes one PAX extended-header record, "LEN KEY=VALUE\n",
// where LEN counts the whole record, itself included.
func paxRecord(k, v string) []byte {
	body := " " + k + "=" + v + "\n"
	n := len(body)
	for n < len(body)+len(strconv.Itoa(n)) {
		n++
	}
	return []byte(strconv.Itoa(n) + body)
}

// ustarHeader encodes a USTAR header block of the given type for an entry
// of size bytes, owned by 0, with the basebackup's file mode.
func ustarHeader(name string, typ byte, size int64, mod time.Time) ([]byte, error) {
	if len(name) > 100 {
		return nil, fmt.Errorf("tar header: name %q longer than 100 bytes", name)
	}
	b := make([]byte, 512)
	octal := func(field []byte, v int64) { copy(field, fmt.Sprintf("%0*o\x00", len(field)-1, v)) }
	copy(b[0:100], name)
	octal(b[100:108], fileMode)
	octal(b[108:116], 0)
	octal(b[116:124], 0)
	octal(b[124:136], size)
	octal(b[136:148], mod.Unix())
	b[156] = typ
	copy(b[257:263], "ustar\x00")
	copy(b[263:265], "00")
	copy(b[148:156], "        ")
	var sum int64
	for _, c := range b {
		sum += int64(c)
	}
	copy(b[148:156], fmt.Sprintf("%06o\x00 ", sum))
	return b, nil
}
