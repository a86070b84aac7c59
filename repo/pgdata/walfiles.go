package pgdata

import (
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
)

// WALSegmentFile is a WAL segment file on disk.
type WALSegmentFile struct {
	Path    string
	TLI     uint32
	SegNo   uint64
	Partial bool // named with the ".partial" suffix
}

// WALReadOptions say which part of the WAL a WALFileReader returns.
type WALReadOptions struct {
	// Start is where to start reading; 0 means the start of the first
	// segment. Like pg_waldump, a Start that is not a record boundary
	// starts at the first record after it.
	Start LSN
	// End, if not 0, is where to stop: no byte at or after End is read,
	// so the last record returned is the last one that ends by End.
	End LSN
}

// walFileReadSize is how much of a segment file is read and fed at once.
const walFileReadSize = 256 << 10

// WALFileReader reads the records of WAL segment files, in LSN order.
type WALFileReader struct {
	segs    []WALSegmentFile // sorted by SegNo, one per segment
	segSize uint64
	sysID   uint64
	start   LSN // the first record returned is at or after start
	end     LSN

	dec *WALDecoder
	buf []byte

	// The file being fed, and the LSN of its next byte to feed.
	seg    int // the file's index in segs
	file   *os.File
	feedAt LSN
	// Why there is nothing more to feed, once that is known.
	exhausted string
	found     bool  // a record at or after start has been returned
	err       error // sticky
}

// OpenWAL finds the WAL segment files among paths (segment files, or
// directories holding them such as pg_wal; other files in a directory are
// ignored) and returns a reader of their records. The segment size comes
// from the first file's long page header, so a file that is not WAL is a
// clear error. Where one segment exists on several timelines, the highest
// timeline's file is used; a full file is preferred over a ".partial" one.
// A segment file shorter than the segment size, or a missing segment, is
// where the WAL ends.
func OpenWAL(paths []string, opts WALReadOptions) (*WALFileReader, error) {
	names, err := listWALFiles(paths)
	if err != nil {
		return nil, err
	}
	first := names[0]
	segSize, sysID, err := readSegmentHeader(first.path, first.tli, first.log, first.seg)
	if err != nil {
		return nil, err
	}
	segs, err := chooseSegments(names, segSize)
	if err != nil {
		return nil, err
	}
	r := &WALFileReader{segs: segs, segSize: segSize, sysID: sysID, start: opts.Start, end: opts.End}
	firstLSN := LSN(segs[0].SegNo * segSize)
	lastLSN := LSN((segs[len(segs)-1].SegNo + 1) * segSize)
	if r.start == 0 {
		r.start = firstLSN
	}
	if r.start < firstLSN || r.start >= lastLSN {
		return nil, fmt.Errorf("start WAL location %s is not inside the WAL files, which cover %s to %s", r.start, firstLSN, lastLSN)
	}
	if r.end != 0 && r.end <= r.start {
		return nil, fmt.Errorf("end WAL location %s is not after the start %s", r.end, r.start)
	}
	if r.segmentIndex(r.start.SegmentNo(segSize)) < 0 {
		return nil, fmt.Errorf("start WAL location %s: there is no file for segment %s", r.start, WALFileName(first.tli, r.start.SegmentNo(segSize), segSize))
	}
	at, err := r.findFirstRecord()
	if err != nil {
		r.Close()
		return nil, err
	}
	r.dec = NewWALDecoder(at, segSize)
	r.dec.ExpectSystemID(sysID)
	r.feedAt = at
	return r, nil
}

// SegmentSize is the WAL segment size the files were written with.
func (r *WALFileReader) SegmentSize() uint64 { return r.segSize }

// SystemID is the system identifier in the segments' long page headers.
func (r *WALFileReader) SystemID() uint64 { return r.sysID }

// Close closes the file being read.
func (r *WALFileReader) Close() error {
	if r.file == nil {
		return nil
	}
	err := r.file.Close()
	r.file = nil
	return err
}

// Next returns the next record. At the end of valid WAL, or of the files,
// or at WALReadOptions.End, it returns an *EndOfWALError saying where and
// why; other errors are I/O errors.
func (r *WALFileReader) Next() (*Record, error) {
	for r.err == nil {
		rec, err := r.dec.Next()
		switch {
		case err == nil:
			if rec.LSN >= r.start {
				r.found = true
				return rec, nil
			}
		case errors.Is(err, ErrNeedMoreWAL):
			if err := r.feed(); err != nil {
				r.fail(err)
			}
		default:
			r.fail(err)
		}
	}
	return nil, r.err
}

// fail makes err the reader's sticky error.
func (r *WALFileReader) fail(err error) {
	var eow *EndOfWALError
	if errors.As(err, &eow) && !r.found {
		// As pg_waldump says when XLogFindNextRecord fails.
		eow = &EndOfWALError{LSN: eow.LSN, Reason: fmt.Sprintf("could not find a valid record after %s: %s", r.start, eow.Reason)}
		err = eow
	}
	r.err = err
}

// feed gives the decoder the next chunk of the files; when there is none,
// it returns the *EndOfWALError that ends the reading.
func (r *WALFileReader) feed() error {
	if r.exhausted == "" && r.end != 0 && r.feedAt >= r.end {
		r.exhausted = fmt.Sprintf("reached the end position %s", r.end)
	}
	if r.exhausted != "" {
		lsn := r.dec.NextRecordLSN()
		if r.dec.FeedLSN() > lsn {
			return &EndOfWALError{LSN: lsn, Reason: fmt.Sprintf("record at %s continues past the end of the WAL read: %s", lsn, r.exhausted)}
		}
		return &EndOfWALError{LSN: lsn, Reason: fmt.Sprintf("end of the WAL read at %s: %s", lsn, r.exhausted)}
	}
	if r.file == nil {
		if err := r.openSegment(); err != nil || r.exhausted != "" {
			return err
		}
	}
	if r.buf == nil {
		r.buf = make([]byte, walFileReadSize)
	}
	want := len(r.buf)
	segEnd := LSN((r.segs[r.seg].SegNo + 1) * r.segSize)
	if left := segEnd - r.feedAt; LSN(want) > left {
		want = int(left)
	}
	if r.end != 0 && r.feedAt+LSN(want) > r.end {
		want = int(r.end - r.feedAt)
	}
	n, err := r.file.ReadAt(r.buf[:want], int64(r.feedAt.SegmentOffset(r.segSize)))
	if err != nil && !errors.Is(err, io.EOF) {
		return fmt.Errorf("read WAL file %s: %w", r.segs[r.seg].Path, err)
	}
	r.dec.Feed(r.buf[:n])
	r.feedAt += LSN(n)
	switch {
	case r.end != 0 && r.feedAt >= r.end:
		r.exhausted = fmt.Sprintf("reached the end position %s", r.end)
	case n < want:
		r.exhausted = fmt.Sprintf("WAL file %s ends at offset %d, short of the %d-byte segment",
			r.segs[r.seg].Path, r.feedAt.SegmentOffset(r.segSize), r.segSize)
	case r.feedAt == segEnd:
		err := r.file.Close()
		r.file = nil
		if err != nil {
			return fmt.Errorf("close WAL file: %w", err)
		}
	}
	return nil
}

// openSegment opens the file of the segment that holds feedAt, or notes
// that there is none.
func (r *WALFileReader) openSegment() error {
	segNo := r.feedAt.SegmentNo(r.segSize)
	r.seg = r.segmentIndex(segNo)
	if r.seg < 0 {
		r.exhausted = fmt.Sprintf("there is no WAL file for segment %s", WALFileName(r.segs[len(r.segs)-1].TLI, segNo, r.segSize))
		return nil
	}
	f, err := os.Open(r.segs[r.seg].Path)
	if err != nil {
		return fmt.Errorf("open WAL file: %w", err)
	}
	r.file = f
	return nil
}

// segmentIndex is the index in r.segs of segment segNo, -1 if absent.
func (r *WALFileReader) segmentIndex(segNo uint64) int {
	i := sort.Search(len(r.segs), func(i int) bool { return r.segs[i].SegNo >= segNo })
	if i < len(r.segs) && r.segs[i].SegNo == segNo {
		return i
	}
	return -1
}

// readAt reads n bytes at lsn from the segment files.
func (r *WALFileReader) readAt(lsn LSN, n int) ([]byte, error) {
	i := r.segmentIndex(lsn.SegmentNo(r.segSize))
	if i < 0 {
		return nil, fmt.Errorf("no WAL file holds %s", lsn)
	}
	f, err := os.Open(r.segs[i].Path)
	if err != nil {
		return nil, fmt.Errorf("open WAL file: %w", err)
	}
	defer f.Close()
	b := make([]byte, n)
	if _, err := f.ReadAt(b, int64(lsn.SegmentOffset(r.segSize))); err != nil {
		return nil, fmt.Errorf("read %d bytes at %s from WAL file %s: %w", n, lsn, r.segs[i].Path, err)
	}
	return b, nil
}

// findFirstRecord finds where the first record at or after r.start may
// start, as XLogFindNextRecord does: at the page holding r.start, skip the
// rest of a record that began on an earlier page (perhaps over several
// pages). Records from there are read and those before r.start dropped.
// It also checks the long header of the start's segment, as PostgreSQL
// does on entering a segment.
func (r *WALFileReader) findFirstRecord() (LSN, error) {
	segStart := r.start - LSN(r.start.SegmentOffset(r.segSize))
	if _, err := r.pageHeader(segStart); err != nil {
		return 0, err
	}
	at := r.start
	for {
		page := at - LSN(at.PageOffset())
		h, err := r.pageHeader(page)
		if err != nil {
			return 0, err
		}
		size := LSN(h.Size())
		switch {
		case h.Info&XLPFirstIsContRecord == 0:
			at = page + size
		case LSN(h.RemLen).Align() >= XLogBlockSize-size:
			at = page + XLogBlockSize
			continue
		default:
			at = page + size + LSN(h.RemLen).Align()
		}
		return at, nil
	}
}

// pageHeader reads and checks the header of the page at addr.
func (r *WALFileReader) pageHeader(addr LSN) (XLogPageHeader, error) {
	i := r.segmentIndex(addr.SegmentNo(r.segSize))
	if i < 0 {
		return XLogPageHeader{}, fmt.Errorf("no WAL file holds %s", addr)
	}
	size := XLogShortPageHeaderSize
	if addr.SegmentOffset(r.segSize) == 0 {
		size = XLogLongPageHeaderSize
	}
	b, err := r.readAt(addr, size)
	if err != nil {
		return XLogPageHeader{}, err
	}
	h, err := ParseXLogPageHeader(b)
	if err == nil {
		err = h.Check(addr, r.segSize, r.segs[i].TLI)
	}
	if err == nil && h.IsLong() && h.SysID != r.sysID {
		err = fmt.Errorf("WAL file is from different database system: WAL file database system identifier is %d, the first file's is %d", h.SysID, r.sysID)
	}
	if err != nil {
		return XLogPageHeader{}, fmt.Errorf("WAL page at %s in %s: %w", addr, r.segs[i].Path, err)
	}
	return h, nil
}

// walFileName is a WAL segment file name split into its parts, before
// the segment size needed to number it is known.
type walFileName struct {
	path          string
	tli, log, seg uint32
	partial       bool
}

// listWALFiles finds the WAL segment files named by paths, sorted by name.
func listWALFiles(paths []string) ([]walFileName, error) {
	if len(paths) == 0 {
		return nil, errors.New("no WAL files or directories given")
	}
	var out []walFileName
	for _, p := range paths {
		fi, err := os.Stat(p)
		if err != nil {
			return nil, err
		}
		if !fi.IsDir() {
			n, err := walFileNameOf(p)
			if err != nil {
				return nil, err
			}
			out = append(out, n)
			continue
		}
		entries, err := os.ReadDir(p)
		if err != nil {
			return nil, err
		}
		found := false
		for _, e := range entries {
			if n, err := walFileNameOf(filepath.Join(p, e.Name())); err == nil && e.Type().IsRegular() {
				out = append(out, n)
				found = true
			}
		}
		if !found {
			return nil, fmt.Errorf("directory %s holds no WAL segment files", p)
		}
	}
	sort.Slice(out, func(i, j int) bool {
		a, b := out[i], out[j]
		if a.log != b.log || a.seg != b.seg {
			return a.log < b.log || a.log == b.log && a.seg < b.seg
		}
		return a.tli < b.tli
	})
	return out, nil
}

// walFileNameOf checks that path's base name is a WAL segment file name
// and splits it.
func walFileNameOf(path string) (walFileName, error) {
	tli, log, seg, partial, err := splitWALFileName(filepath.Base(path))
	if err != nil {
		return walFileName{}, err
	}
	return walFileName{path: path, tli: tli, log: log, seg: seg, partial: partial}, nil
}

// readSegmentHeader reads the long page header at the start of the WAL
// file path and returns the segment size and system identifier it gives.
func readSegmentHeader(path string, tli, log, seg uint32) (segSize, sysID uint64, err error) {
	f, err := os.Open(path)
	if err != nil {
		return 0, 0, err
	}
	defer f.Close()
	b := make([]byte, XLogLongPageHeaderSize)
	if _, err := io.ReadFull(f, b); err != nil {
		return 0, 0, fmt.Errorf("%s is not a WAL segment file: it is shorter than a page header", path)
	}
	h, _ := ParseXLogPageHeader(b)
	if h.Magic != XLogPageMagic || !h.IsLong() {
		return 0, 0, fmt.Errorf("%s is not a WAL segment file of PostgreSQL 15: its first page header has magic %04X and info %04X, want magic %04X and a long header",
			path, h.Magic, h.Info, XLogPageMagic)
	}
	segSize = uint64(h.SegSize)
	if !ValidWALSegmentSize(segSize) {
		return 0, 0, fmt.Errorf("%s: invalid WAL segment size %d in the first page header", path, segSize)
	}
	segNo, err := walSegNo(filepath.Base(path), log, seg, segSize)
	if err != nil {
		return 0, 0, err
	}
	if err := h.Check(LSN(segNo*segSize), segSize, tli); err != nil {
		return 0, 0, fmt.Errorf("%s: %w", path, err)
	}
	return segSize, h.SysID, nil
}

// chooseSegments numbers the files for segments of segSize bytes and keeps
// one file per segment: the highest timeline's, a full file before a
// partial one.
func chooseSegments(names []walFileName, segSize uint64) ([]WALSegmentFile, error) {
	var segs []WALSegmentFile
	for _, n := range names {
		segNo, err := walSegNo(filepath.Base(n.path), n.log, n.seg, segSize)
		if err != nil {
			return nil, err
		}
		s := WALSegmentFile{Path: n.path, TLI: n.tli, SegNo: segNo, Partial: n.partial}
		if k := len(segs) - 1; k >= 0 && segs[k].SegNo == s.SegNo {
			if s.TLI > segs[k].TLI || s.TLI == segs[k].TLI && segs[k].Partial && !s.Partial {
				segs[k] = s
			}
			continue
		}
		segs = append(segs, s)
	}
	return segs, nil
}
