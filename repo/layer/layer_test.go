package layer

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"path/filepath"
	"testing"
	"time"

	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/value"
	"github.com/zenithdb/zenith/repo/vfs"
)

var testRel = pgdata.RelFileNode{SpcNode: 1663, DbNode: 5, RelNode: 16384}

func blk(n uint32) key.Key { return key.RelBlock(testRel, pgdata.ForkMain, n) }

func page(tag string) []byte { return bytes.Repeat([]byte(tag), 8192/len(tag)) }

// history is the values used by several tests: block 1 has an image and
// records, block 2 starts with a will_init record, block 3 only records.
func fillHistory(t *testing.T, m *MemLayer) {
	t.Helper()
	puts := []struct {
		k   key.Key
		lsn pgdata.LSN
		v   value.Value
	}{
		{blk(1), 0x10, value.Image(page("a"))},
		{blk(1), 0x20, value.WALRecord([]byte("r1"), false)},
		{blk(2), 0x20, value.WALRecord([]byte("init"), true)},
		{blk(1), 0x30, value.WALRecord([]byte("r2"), false)},
		{blk(2), 0x30, value.WALRecord([]byte("r3"), false)},
		{blk(3), 0x40, value.WALRecord([]byte("r4"), false)},
		{blk(1), 0x50, value.Image(page("b"))},
		{blk(1), 0x60, value.WALRecord([]byte("r5"), false)},
	}
	for _, p := range puts {
		if err := m.Put(p.k, p.lsn, p.v); err != nil {
			t.Fatal(err)
		}
	}
}

// describe renders a reconstruct state compactly for comparisons.
func describe(st *ReconstructState) string {
	s := ""
	if st.Image != nil {
		s += fmt.Sprintf("img%c@%x", st.Image[0], uint64(st.ImageLSN))
	}
	for _, r := range st.Records {
		s += fmt.Sprintf(" %s@%x", r.Value.Data, uint64(r.LSN))
	}
	if st.Complete {
		s += " complete"
	}
	return s
}

var collectTests = []struct {
	k    key.Key
	lsns LSNRange
	want string
}{
	{blk(1), LSNRange{0, 0x100}, "imgb@50 r5@60 complete"},
	{blk(1), LSNRange{0, 0x5F}, "imgb@50 complete"},
	{blk(1), LSNRange{0, 0x50}, "imga@10 r2@30 r1@20 complete"},
	{blk(1), LSNRange{0, 0x41}, "imga@10 r2@30 r1@20 complete"},
	{blk(1), LSNRange{0x25, 0x50}, " r2@30"},
	{blk(2), LSNRange{0, 0x100}, " r3@30 init@20 complete"},
	{blk(2), LSNRange{0, 0x21}, " init@20 complete"},
	{blk(3), LSNRange{0, 0x100}, " r4@40"},
	{blk(3), LSNRange{0, 0x40}, ""},
	{blk(4), LSNRange{0, 0x100}, ""},
}

func TestMemLayerCollect(t *testing.T) {
	m := NewMemLayer(0x10, time.Now())
	fillHistory(t, m)
	for _, tt := range collectTests {
		var st ReconstructState
		if err := m.Collect(tt.k, tt.lsns, &st); err != nil {
			t.Fatal(err)
		}
		if got := describe(&st); got != tt.want {
			t.Errorf("Collect(%v, %v) = %q, want %q", tt.k, tt.lsns, got, tt.want)
		}
	}
}

func TestMemLayerRejectsOutOfOrder(t *testing.T) {
	m := NewMemLayer(0x10, time.Now())
	if err := m.Put(blk(1), 0x20, value.Image(nil)); err != nil {
		t.Fatal(err)
	}
	for _, lsn := range []pgdata.LSN{0x20, 0x18, 0x8} {
		if err := m.Put(blk(1), lsn, value.Image(nil)); !errors.Is(err, ErrOutOfOrder) {
			t.Errorf("Put at %v after 0/20: error = %v, want ErrOutOfOrder", lsn, err)
		}
	}
	if err := m.Freeze(0x20); err == nil {
		t.Error("Freeze below a stored value succeeded")
	}
	if err := m.Freeze(0x21); err != nil {
		t.Fatal(err)
	}
	if err := m.Put(blk(2), 0x21, value.Image(nil)); !errors.Is(err, ErrOutOfOrder) {
		t.Errorf("Put at the frozen end: error = %v, want ErrOutOfOrder", err)
	}
}

func newEnv(t *testing.T) (*Env, string) {
	t.Helper()
	env := NewEnv(vfs.NewMem(), 1<<20, 8)
	t.Cleanup(env.Close)
	dir := "/layers"
	if err := env.FS.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return env, dir
}

func writeHistory(t *testing.T, env *Env, dir string) *File {
	t.Helper()
	m := NewMemLayer(0x10, time.Now())
	fillHistory(t, m)
	if err := m.Freeze(0x61); err != nil {
		t.Fatal(err)
	}
	f, err := m.WriteDelta(env, dir)
	if err != nil {
		t.Fatal(err)
	}
	return f
}

func TestDeltaFileCollect(t *testing.T) {
	env, dir := newEnv(t)
	f := writeHistory(t, env, dir)
	defer f.Close()
	want := Desc{Kind: Delta, Keys: key.All, LSNs: LSNRange{0x10, 0x61}}
	if f.Desc() != want {
		t.Errorf("Desc() = %v, want %v", f.Desc(), want)
	}
	if got, wantName := filepath.Base(f.Path()), want.FileName(); got != wantName {
		t.Errorf("file name %q, want %q", got, wantName)
	}
	for _, tt := range collectTests {
		var st ReconstructState
		if err := f.Collect(tt.k, tt.lsns, &st); err != nil {
			t.Fatal(err)
		}
		if got := describe(&st); got != tt.want {
			t.Errorf("Collect(%v, %v) = %q, want %q", tt.k, tt.lsns, got, tt.want)
		}
	}
	// A fresh File on the same name reads the same (reopen after restart).
	again := OpenFile(env, dir, want)
	defer again.Close()
	var st ReconstructState
	if err := again.Collect(blk(2), LSNRange{0, 0x100}, &st); err != nil || describe(&st) != " r3@30 init@20 complete" {
		t.Errorf("reopened Collect = %q, %v", describe(&st), err)
	}
}

func TestImageFile(t *testing.T) {
	env, dir := newEnv(t)
	w, err := NewWriter(env, dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []uint32{1, 3} {
		if err := w.Add(blk(n), 0x80, value.Image(page(fmt.Sprint(n))).Encode()); err != nil {
			t.Fatal(err)
		}
	}
	d := ImageDesc(key.Range{Start: blk(0), End: blk(10)}, 0x80)
	f, err := w.Finish(d)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	tests := []struct {
		k    key.Key
		want string
	}{
		{blk(1), "img1@80 complete"},
		{blk(2), " complete"}, // in range, absent: does not exist at 0/80
		{blk(3), "img3@80 complete"},
	}
	for _, tt := range tests {
		var st ReconstructState
		if err := f.Collect(tt.k, LSNRange{0, 0x100}, &st); err != nil {
			t.Fatal(err)
		}
		if got := describe(&st); got != tt.want {
			t.Errorf("Collect(%v) = %q, want %q", tt.k, got, tt.want)
		}
	}
}

// TestCursorsCollect reads the history through Cursors of a scan, one
// iterator kept for all reads as a batch read keeps it, and through a
// delta and an image file read in turn: each read must find what
// Collect finds, and none of the blocks may go into the shared block
// cache, which point reads (Collect) fill.
func TestCursorsCollect(t *testing.T) {
	env, dir := newEnv(t)
	delta := writeHistory(t, env, dir)
	defer delta.Close()
	w, err := NewWriter(env, dir)
	if err != nil {
		t.Fatal(err)
	}
	images := map[key.Key]string{}
	for n := uint32(1); n <= 3; n++ {
		if err := w.Add(blk(n), 0x80, value.Image(page(fmt.Sprint(n))).Encode()); err != nil {
			t.Fatal(err)
		}
		images[blk(n)] = fmt.Sprintf("img%d@80 complete", n)
	}
	image, err := w.Finish(ImageDesc(key.Range{Start: blk(0), End: blk(10)}, 0x80))
	if err != nil {
		t.Fatal(err)
	}
	defer image.Close()

	c := Cursors{Scan: true}
	for round := range 2 { // the second with the iterators positioned
		for _, tt := range collectTests {
			var st ReconstructState
			if err := c.Collect(delta, tt.k, tt.lsns, &st); err != nil {
				t.Fatal(err)
			}
			if got := describe(&st); got != tt.want {
				t.Errorf("round %d: Cursors.Collect(delta, %v, %v) = %q, want %q", round, tt.k, tt.lsns, got, tt.want)
			}
			st = ReconstructState{}
			if err := c.Collect(image, tt.k, LSNRange{0, 0x100}, &st); err != nil {
				t.Fatal(err)
			}
			want, ok := images[tt.k]
			if !ok {
				want = " complete" // in range, absent
			}
			if got := describe(&st); got != want {
				t.Errorf("round %d: Cursors.Collect(image, %v) = %q, want %q", round, tt.k, got, want)
			}
		}
	}
	if err := c.Close(); err != nil {
		t.Fatal(err)
	}
	// Opening a file caches its properties block (about 1 KiB); a data
	// block holds at least one page.
	before := env.BlockCacheBytes()
	if before >= pgdata.BlockSize {
		t.Errorf("after batch reads the block cache holds %d bytes: data blocks went into it", before)
	}
	var st ReconstructState
	if err := image.Collect(blk(1), LSNRange{0, 0x100}, &st); err != nil {
		t.Fatal(err)
	}
	if after := env.BlockCacheBytes(); after-before < pgdata.BlockSize {
		t.Errorf("a point read added %d bytes to the block cache, want its data block", after-before)
	}
}

// TestCursorsTwoLevelIndex reads files large enough for a two-level
// sstable index (where pebble's seeks reload blocks unless the bounds
// move forwards) through Cursors, key after key in ascending order as a
// batch read does, at several LSNs: a delta layer of images, records
// and will_init records over an image layer. Every key must read as a
// point read (Collect) reads it.
func TestCursorsTwoLevelIndex(t *testing.T) {
	env, dir := newEnv(t)
	const keys = 6000
	pageOf := func(n uint32, lsn pgdata.LSN) []byte {
		return page(fmt.Sprintf("%d@%x.", n, uint64(lsn)))
	}
	w, err := NewWriter(env, dir)
	if err != nil {
		t.Fatal(err)
	}
	for n := uint32(0); n < keys; n++ {
		if err := w.Add(blk(n), 0x100, value.Image(pageOf(n, 0x100)).Encode()); err != nil {
			t.Fatal(err)
		}
	}
	image, err := w.Finish(ImageDesc(key.Range{Start: blk(0), End: blk(keys)}, 0x100))
	if err != nil {
		t.Fatal(err)
	}
	defer image.Close()
	m := NewMemLayer(0x101, time.Now())
	for _, lsn := range []pgdata.LSN{0x110, 0x120, 0x130} {
		for n := uint32(0); n < keys; n++ {
			var v value.Value
			switch {
			case lsn == 0x120 && n%3 != 0:
				v = value.Image(pageOf(n, lsn))
			case lsn == 0x110 && n%5 == 0:
				v = value.WALRecord([]byte(fmt.Sprintf("init %d", n)), true)
			case n%2 == 0:
				v = value.WALRecord([]byte(fmt.Sprintf("r%d@%x", n, uint64(lsn))), false)
			default:
				continue
			}
			if err := m.Put(blk(n), lsn, v); err != nil {
				t.Fatal(err)
			}
		}
	}
	if err := m.Freeze(0x131); err != nil {
		t.Fatal(err)
	}
	delta, err := m.WriteDelta(env, dir)
	if err != nil {
		t.Fatal(err)
	}
	defer delta.Close()
	for _, f := range []*File{image, delta} {
		if _, err := f.reader(); err != nil {
			t.Fatal(err)
		}
		parts := f.r.Properties.IndexPartitions
		f.mu.RUnlock()
		if parts == 0 {
			t.Fatalf("%s has a one-level index: the test needs more keys", f.Path())
		}
	}
	// read is what the timeline's collect does: the delta, then the
	// image below it if the page is not complete.
	read := func(collect func(*File, key.Key, LSNRange, *ReconstructState) error, k key.Key, end pgdata.LSN) (ReconstructState, error) {
		var st ReconstructState
		if err := collect(delta, k, LSNRange{Start: 0x101, End: end}, &st); err != nil || st.Complete {
			return st, err
		}
		return st, collect(image, k, LSNRange{Start: 0, End: 0x101}, &st)
	}
	point := func(f *File, k key.Key, lsns LSNRange, st *ReconstructState) error { return f.Collect(k, lsns, st) }
	for i, end := range []pgdata.LSN{0x101, 0x111, 0x121, 0x131} {
		c := Cursors{Scan: i%2 == 1}
		batch := func(f *File, k key.Key, lsns LSNRange, st *ReconstructState) error { return c.Collect(f, k, lsns, st) }
		for n := uint32(0); n < keys; n++ {
			want, err := read(point, blk(n), end)
			if err != nil {
				t.Fatal(err)
			}
			got, err := read(batch, blk(n), end)
			if err != nil {
				t.Fatal(err)
			}
			if describe(&got) != describe(&want) || !bytes.Equal(got.Image, want.Image) {
				t.Fatalf("block %d below %x: batch read (scan %v) %q, point read %q", n, uint64(end), c.Scan, describe(&got), describe(&want))
			}
		}
		if err := c.Close(); err != nil {
			t.Fatal(err)
		}
	}
}

func TestWriterChecksRanges(t *testing.T) {
	env, dir := newEnv(t)
	tests := []struct {
		name string
		d    Desc
	}{
		{"key outside", Desc{Kind: Delta, Keys: key.Range{Start: blk(5), End: blk(9)}, LSNs: LSNRange{0, 0x100}}},
		{"lsn outside", Desc{Kind: Delta, Keys: key.All, LSNs: LSNRange{0x30, 0x100}}},
		{"image at another lsn", ImageDesc(key.All, 0x40)},
	}
	for _, tt := range tests {
		w, err := NewWriter(env, dir)
		if err != nil {
			t.Fatal(err)
		}
		if err := w.Add(blk(1), 0x20, value.Image(nil).Encode()); err != nil {
			t.Fatal(err)
		}
		if err := w.Add(blk(1), 0x20, value.Image(nil).Encode()); !errors.Is(err, ErrOutOfOrder) {
			t.Errorf("%s: duplicate entry: error = %v, want ErrOutOfOrder", tt.name, err)
		}
		if _, err := w.Finish(tt.d); err == nil {
			t.Errorf("%s: Finish(%v) succeeded", tt.name, tt.d)
		}
	}
	names, _ := env.FS.List(dir)
	if len(names) != 0 {
		t.Errorf("failed writers left files behind: %v", names)
	}
}

func TestFileNames(t *testing.T) {
	descs := []Desc{
		{Kind: Delta, Keys: key.All, LSNs: LSNRange{0x10, 0x61}},
		ImageDesc(key.Range{Start: blk(0), End: blk(10)}, 0x16B9188),
	}
	for _, d := range descs {
		got, err := ParseFileName(d.FileName())
		if err != nil || got != d {
			t.Errorf("ParseFileName(%q) = %v, %v; want %v", d.FileName(), got, err, d)
		}
	}
	bad := []string{
		"metadata",
		"x.tmp",
		key.Min.Hex() + "-" + key.Max.Hex() + "__0000000000000010-0000000000000010", // empty LSN range
		key.Max.Hex() + "-" + key.Min.Hex() + "__0000000000000010",                  // empty key range
		key.Min.Hex() + "-" + key.Max.Hex() + "__10",
		key.Min.Hex() + "__0000000000000010",
	}
	for _, n := range bad {
		if d, err := ParseFileName(n); err == nil {
			t.Errorf("ParseFileName(%q) = %v, want an error", n, d)
		}
	}
}

func readAll(t *testing.T, fs vfs.FS, name string) []byte {
	t.Helper()
	f, err := fs.Open(name)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	b, err := io.ReadAll(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeAll(t *testing.T, fs vfs.FS, name string, b []byte) {
	t.Helper()
	f, err := fs.Create(name)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.Write(b); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
}

// readEverything reads every entry of the layer and every key's history,
// as a user of the layer would, and renders it.
func readEverything(f *File) (string, error) {
	if err := f.Verify(); err != nil {
		return "", err
	}
	var out bytes.Buffer
	err := f.Scan(key.All, func(k key.Key, lsn pgdata.LSN, v value.Value) error {
		fmt.Fprintf(&out, "%v@%v=%v/%x;", k, lsn, v, v.Data)
		return nil
	})
	if err != nil {
		return "", err
	}
	for _, tt := range collectTests {
		var st ReconstructState
		if err := f.Collect(tt.k, tt.lsns, &st); err != nil {
			return "", err
		}
		out.WriteString(describe(&st))
	}
	// And through the Cursors of a scan, whose reader is another.
	c := Cursors{Scan: true}
	for _, tt := range collectTests {
		var st ReconstructState
		if err := c.Collect(f, tt.k, tt.lsns, &st); err != nil {
			c.Close()
			return "", err
		}
		out.WriteString(describe(&st))
	}
	return out.String(), c.Close()
}

// TestCorruptionIsDetected flips each byte of a layer file in turn, and
// truncates it at several lengths: every read must fail with a
// CorruptionError naming the file, or return exactly the original data.
func TestCorruptionIsDetected(t *testing.T) {
	env, dir := newEnv(t)
	f := writeHistory(t, env, dir)
	want, err := readEverything(f)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	orig := readAll(t, env.FS, f.Path())
	check := func(what string, b []byte) {
		writeAll(t, env.FS, f.Path(), b)
		g := OpenFile(env, dir, f.Desc())
		defer g.Close()
		got, err := readEverything(g)
		var ce *CorruptionError
		switch {
		case errors.As(err, &ce):
			if ce.File != f.Path() {
				t.Errorf("%s: CorruptionError names %q, want %q", what, ce.File, f.Path())
			}
		case err != nil:
			t.Errorf("%s: error %v is not a CorruptionError", what, err)
		case got != want:
			t.Errorf("%s: read wrong data without an error", what)
		}
	}
	undetected := 0
	for i := range orig {
		b := bytes.Clone(orig)
		b[i] ^= 0x40
		check(fmt.Sprintf("flip byte %d of %d", i, len(orig)), b)
		if got, err := readEverything(OpenFile(env, dir, f.Desc())); err == nil && got == want {
			undetected++
		}
	}
	t.Logf("%d of %d flipped bytes changed nothing a reader sees", undetected, len(orig))
	for _, n := range []int{0, 1, trailerSize - 1, trailerSize, len(orig) / 2, len(orig) - trailerSize, len(orig) - 1} {
		check(fmt.Sprintf("truncate to %d of %d", n, len(orig)), orig[:n])
	}
}

func FuzzLayerFile(f *testing.F) {
	env := NewEnv(vfs.NewMem(), 0, 8)
	defer env.Close()
	dir := "/layers"
	if err := env.FS.MkdirAll(dir, 0o755); err != nil {
		f.Fatal(err)
	}
	m := NewMemLayer(0x10, time.Now())
	for i := uint32(0); i < 3; i++ {
		if err := m.Put(blk(i), 0x10+pgdata.LSN(i), value.WALRecord([]byte{byte(i)}, i == 0)); err != nil {
			f.Fatal(err)
		}
	}
	if err := m.Freeze(0x20); err != nil {
		f.Fatal(err)
	}
	lf, err := m.WriteDelta(env, dir)
	if err != nil {
		f.Fatal(err)
	}
	lf.Close()
	orig := readAllF(f, env.FS, lf.Path())
	f.Add(orig)
	f.Fuzz(func(t *testing.T, b []byte) {
		writeAll(t, env.FS, lf.Path(), b)
		g := OpenFile(env, dir, lf.Desc())
		defer g.Close()
		_ = g.Scan(key.All, func(key.Key, pgdata.LSN, value.Value) error { return nil })
		var st ReconstructState
		_ = g.Collect(blk(1), LSNRange{0, 0x100}, &st)
	})
}

func readAllF(f *testing.F, fs vfs.FS, name string) []byte {
	file, err := fs.Open(name)
	if err != nil {
		f.Fatal(err)
	}
	defer file.Close()
	b, err := io.ReadAll(file)
	if err != nil {
		f.Fatal(err)
	}
	return b
}

func TestEmptyImageFile(t *testing.T) {
	env, dir := newEnv(t)
	w, err := NewWriter(env, dir)
	if err != nil {
		t.Fatal(err)
	}
	f, err := w.Finish(ImageDesc(key.Range{Start: blk(0), End: blk(10)}, 0x80))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var st ReconstructState
	if err := f.Collect(blk(3), LSNRange{0, 0x100}, &st); err != nil {
		t.Fatal(err)
	}
	if got := describe(&st); got != " complete" {
		t.Errorf("Collect in an empty image layer = %q, want %q", got, " complete")
	}
}
