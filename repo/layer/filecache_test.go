package layer

import (
	"fmt"
	"math/rand"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/value"
	"github.com/zenithdb/zenith/repo/vfs"
)

// writeManyFiles writes n delta layer files on the real file system; file
// i holds an image of block i at LSN 0x10*(i+1) and a record after it.
func writeManyFiles(t *testing.T, env *Env, dir string, n int) []*File {
	t.Helper()
	var files []*File
	for i := 0; i < n; i++ {
		lsn := pgdata.LSN(0x10 * (i + 1))
		m := NewMemLayer(lsn, time.Now())
		if err := m.Put(blk(uint32(i)), lsn, value.Image(page(fmt.Sprintf("p%03d", i)))); err != nil {
			t.Fatal(err)
		}
		if err := m.Put(blk(uint32(i)), lsn+1, value.WALRecord([]byte(fmt.Sprintf("r%d", i)), false)); err != nil {
			t.Fatal(err)
		}
		if err := m.Freeze(lsn + 0x10); err != nil {
			t.Fatal(err)
		}
		f, err := m.WriteDelta(env, dir)
		if err != nil {
			t.Fatal(err)
		}
		files = append(files, f)
	}
	return files
}

// checkFile reads file i's block and compares it with what was written.
func checkFile(f *File, i int) error {
	var st ReconstructState
	if err := f.Collect(blk(uint32(i)), LSNRange{0, 0x10000}, &st); err != nil {
		return err
	}
	want := fmt.Sprintf("img%c@%x r%d@%x complete", 'p', 0x10*(i+1), i, 0x10*(i+1)+1)
	if got := describe(&st); got != want {
		return fmt.Errorf("file %d: Collect = %q, want %q", i, got, want)
	}
	if string(st.Image[:4]) != fmt.Sprintf("p%03d", i) {
		return fmt.Errorf("file %d: image starts %q", i, st.Image[:4])
	}
	return nil
}

// openFilesIn counts this process's file descriptors open on files in dir
// (vfs.OpenFilesIn); the test is skipped where they cannot be counted.
func openFilesIn(t *testing.T, dir string) int {
	t.Helper()
	n, err := vfs.OpenFilesIn(dir)
	if err != nil {
		t.Skip(err)
	}
	return n
}

func TestFileCacheBoundsOpenFiles(t *testing.T) {
	const n, limit = 60, 4
	dir := t.TempDir()
	env := NewEnv(vfs.Default, 1<<20, limit)
	t.Cleanup(env.Close)
	files := writeManyFiles(t, env, dir, n)
	if got := openFilesIn(t, dir); got != 0 {
		t.Fatalf("%d layer files open after writing them, want 0", got)
	}
	rng := rand.New(rand.NewSource(1))
	for round := 0; round < 3; round++ {
		for _, i := range rng.Perm(n) {
			if err := checkFile(files[i], i); err != nil {
				t.Fatal(err)
			}
			st := env.FileStats()
			if st.Open > limit {
				t.Fatalf("after reading file %d: %d files open, limit %d", i, st.Open, limit)
			}
			if fds := openFilesIn(t, dir); fds != st.Open {
				t.Fatalf("after reading file %d: %d descriptors open in %s, the cache counts %d", i, fds, dir, st.Open)
			}
		}
	}
	st := env.FileStats()
	if st.Open != limit || st.OverLimit != 0 || st.Evictions != st.Opens-limit {
		t.Errorf("stats after serial reads = %+v, want %d open, none over the limit, every open but %d evicting one", st, limit, limit)
	}

	// Concurrent readers: every read right, and the limit holds once they
	// are done (each holds at most one file at a time, fewer than it).
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for g := 0; g < 3; g++ {
		wg.Add(1)
		go func(seed int64) {
			defer wg.Done()
			rng := rand.New(rand.NewSource(seed))
			for k := 0; k < 200; k++ {
				i := rng.Intn(n)
				if err := checkFile(files[i], i); err != nil {
					errs <- err
					return
				}
			}
		}(int64(g))
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if st := env.FileStats(); st.Open > limit || st.OverLimit != 0 {
		t.Errorf("stats after concurrent reads = %+v, want at most %d open, none over the limit", st, limit)
	}
	if fds := openFilesIn(t, dir); fds > limit {
		t.Errorf("%d descriptors open in %s, limit %d", fds, dir, limit)
	}

	for _, f := range files {
		if err := f.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if st, fds := env.FileStats(), openFilesIn(t, dir); st.Open != 0 || fds != 0 {
		t.Errorf("after closing every file: cache counts %d open, %d descriptors, want 0", st.Open, fds)
	}
}

// TestFileCacheKeepsFilesInUse checks that a file being iterated is never
// closed under its iterator, even when every open file is in use.
func TestFileCacheKeepsFilesInUse(t *testing.T) {
	const n, limit = 10, 2
	dir := t.TempDir()
	env := NewEnv(vfs.Default, 0, limit)
	t.Cleanup(env.Close)
	files := writeManyFiles(t, env, dir, n)
	var its []*Iterator
	for i := 0; i < limit; i++ {
		it, err := files[i].NewIterator(key.All)
		if err != nil {
			t.Fatal(err)
		}
		its = append(its, it)
	}
	// Every open file is in use: these open past the limit, one at a time.
	for i := limit; i < n; i++ {
		if err := checkFile(files[i], i); err != nil {
			t.Fatal(err)
		}
	}
	st := env.FileStats()
	if st.OverLimit == 0 || st.Open != limit+1 {
		t.Errorf("stats with %d files in use = %+v, want opens over the limit and %d open", limit, st, limit+1)
	}
	for i, it := range its {
		var got []string
		for it.Next() {
			got = append(got, fmt.Sprintf("%v@%x", it.Value().Kind, uint64(it.LSN())))
		}
		if err := it.Close(); err != nil {
			t.Fatalf("iterating file %d while others opened: %v", i, err)
		}
		if len(got) != 2 {
			t.Errorf("file %d: iterator saw %v, want an image and a record", i, got)
		}
	}
	// Once nothing is in use, the next open brings the count back.
	if err := checkFile(files[limit], limit); err != nil {
		t.Fatal(err)
	}
	if st := env.FileStats(); st.Open > limit {
		t.Errorf("stats once the iterators closed = %+v, want at most %d open", st, limit)
	}
	if err := files[0].Remove(); err != nil {
		t.Fatal(err)
	}
	if got, fds := env.FileStats().Open, openFilesIn(t, dir); got != fds {
		t.Errorf("after Remove: cache counts %d open, %d descriptors", got, fds)
	}
	if err := checkFile(files[0], 0); err == nil {
		t.Error("read of a removed file succeeded")
	}
}

// TestFileCacheShedsWhenOutOfDescriptors runs the cache with a limit it
// cannot reach: the process "has" only fds descriptors for layer files
// (an open past them fails with EMFILE, as it does when sockets, pipes
// and other files took the rest). Each read must still succeed: the open
// that fails closes the idle files and tries again.
func TestFileCacheShedsWhenOutOfDescriptors(t *testing.T) {
	const n, limit, fds = 20, 16, 3
	dir := t.TempDir()
	faulty := vfs.NewFaulty(vfs.Default)
	env := NewEnv(faulty, 0, limit)
	t.Cleanup(env.Close)
	files := writeManyFiles(t, env, dir, n)
	faulty.SetRule(func(op vfs.Op, name string) error {
		if op == vfs.OpOpen && openFilesIn(t, dir) >= fds {
			return &os.PathError{Op: "open", Path: name, Err: syscall.EMFILE}
		}
		return nil
	})
	for round := 0; round < 2; round++ {
		for i, f := range files {
			if err := checkFile(f, i); err != nil {
				t.Fatalf("round %d: %v", round, err)
			}
		}
	}
	if st := env.FileStats(); st.Open > fds || st.Evictions == 0 {
		t.Errorf("stats = %+v, want at most %d open and evictions", st, fds)
	}
}
