package api

import (
	"bufio"
	"bytes"
	"fmt"
	"strconv"
	"strings"

	"github.com/zenithdb/zenith/repo/pgdata"
)

// LazyManifestName is the file at the top of a lazy basebackup's tar
// (`basebackup ... lazy`) that lists the relation files the tar leaves
// out: a lazy compute serves them through FUSE, each block fetched with
// GetPage@LSN at the manifest's LSN on its first read.
const LazyManifestName = "zenith_lazy.manifest"

// lazyManifestMagic is the manifest's first line, with its format version.
const lazyManifestMagic = "zenith lazy basebackup 1"

// LazyManifest is what a lazy basebackup says of its missing relation
// files. Its text form is the magic line, "lsn LSN", "relseg_size N",
// then one "PATH SIZE" line per relation file segment (PATH as
// pgdata.RelationPath writes it, SIZE in bytes, a multiple of the block
// size).
type LazyManifest struct {
	// LSN is the basebackup's LSN: every page is fetched as of it.
	LSN pgdata.LSN
	// RelSegSize is the number of blocks per relation segment file.
	RelSegSize uint32
	Files      []LazyFile
}

// LazyFile is one relation file segment a lazy basebackup left out.
type LazyFile struct {
	Path  string
	Size  int64
	Rel   pgdata.RelFileNode
	Fork  pgdata.ForkNumber
	SegNo uint32
}

// FirstBlock is the fork's block number of the file's first block.
func (f LazyFile) FirstBlock(relSegSize uint32) pgdata.BlockNumber {
	return pgdata.BlockNumber(f.SegNo * relSegSize)
}

// Add records the segment segNo of a fork, of size bytes.
func (m *LazyManifest) Add(rel pgdata.RelFileNode, fork pgdata.ForkNumber, segNo uint32, size int64) {
	m.Files = append(m.Files, LazyFile{Path: pgdata.RelationPath(rel, fork, segNo), Size: size, Rel: rel, Fork: fork, SegNo: segNo})
}

// Encode returns the manifest's text.
func (m *LazyManifest) Encode() []byte {
	var b bytes.Buffer
	fmt.Fprintf(&b, "%s\nlsn %s\nrelseg_size %d\n", lazyManifestMagic, m.LSN, m.RelSegSize)
	for _, f := range m.Files {
		fmt.Fprintf(&b, "%s %d\n", f.Path, f.Size)
	}
	return b.Bytes()
}

// ParseLazyManifest reads a manifest's text. Every line is checked: a
// path that is not a relation file, a size that is not whole blocks or
// larger than a segment, a missing header line are errors naming the
// line.
func ParseLazyManifest(text []byte) (*LazyManifest, error) {
	sc := bufio.NewScanner(bytes.NewReader(text))
	sc.Buffer(make([]byte, 4096), 1<<20)
	m := &LazyManifest{}
	line := 0
	header := func(key string) (string, error) {
		line++
		if !sc.Scan() {
			return "", fmt.Errorf("lazy manifest: ends before its %q line", key)
		}
		v, ok := strings.CutPrefix(sc.Text(), key+" ")
		if !ok {
			return "", fmt.Errorf("lazy manifest line %d: %q, want %q", line, sc.Text(), key+" ...")
		}
		return v, nil
	}
	line++
	if !sc.Scan() || sc.Text() != lazyManifestMagic {
		return nil, fmt.Errorf("lazy manifest: first line is not %q", lazyManifestMagic)
	}
	v, err := header("lsn")
	if err != nil {
		return nil, err
	}
	if m.LSN, err = pgdata.ParseLSN(v); err != nil {
		return nil, fmt.Errorf("lazy manifest line %d: %w", line, err)
	}
	if v, err = header("relseg_size"); err != nil {
		return nil, err
	}
	n, err := strconv.ParseUint(v, 10, 32)
	if err != nil || n == 0 {
		return nil, fmt.Errorf("lazy manifest line %d: relseg_size %q is not a positive number", line, v)
	}
	m.RelSegSize = uint32(n)
	for sc.Scan() {
		line++
		p, s, ok := strings.Cut(sc.Text(), " ")
		if !ok {
			return nil, fmt.Errorf("lazy manifest line %d: %q, want PATH SIZE", line, sc.Text())
		}
		rel, fork, seg, err := pgdata.ParseRelationPath(p)
		if err != nil {
			return nil, fmt.Errorf("lazy manifest line %d: %w", line, err)
		}
		size, err := strconv.ParseInt(s, 10, 64)
		if err != nil || size < 0 || size%pgdata.BlockSize != 0 || size > int64(m.RelSegSize)*pgdata.BlockSize {
			return nil, fmt.Errorf("lazy manifest line %d: size %q of %s is not whole blocks of one segment", line, s, p)
		}
		m.Files = append(m.Files, LazyFile{Path: p, Size: size, Rel: rel, Fork: fork, SegNo: seg})
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("lazy manifest: %w", err)
	}
	return m, nil
}
