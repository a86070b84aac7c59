package vfs

import (
	"io"
	"os"

	pvfs "github.com/cockroachdb/pebble/vfs"
)

// File is an open file.
type File interface {
	io.Reader
	io.ReaderAt
	io.Writer
	io.WriterAt
	io.Closer
	// Sync makes the file's contents durable (fsync). For a directory
	// opened with OpenDir, it makes the directory's entries durable.
	Sync() error
	// SyncData makes the file's data durable (fdatasync): like Sync, but
	// without metadata that later reads do not need, such as the
	// modification time. Over blocks already allocated and written (a
	// preallocated file) it commits no metadata at all.
	SyncData() error
	Stat() (os.FileInfo, error)
}

// FS is a file system.
type FS interface {
	// Create creates or truncates the named file for writing.
	Create(name string) (File, error)
	// Open opens the named file for reading.
	Open(name string) (File, error)
	// OpenReadWrite opens the named file for reading and writing,
	// creating it (empty) if it does not exist; an existing file keeps
	// its contents.
	OpenReadWrite(name string) (File, error)
	// OpenDir opens a directory so that it can be synced.
	OpenDir(name string) (File, error)
	// Rename atomically replaces newname with oldname.
	Rename(oldname, newname string) error
	// Remove removes a file or an empty directory.
	Remove(name string) error
	// MkdirAll creates a directory and any missing parents.
	MkdirAll(dir string, perm os.FileMode) error
	// List returns the names of the entries of a directory, unsorted.
	List(dir string) ([]string, error)
	// Stat describes the named file.
	Stat(name string) (os.FileInfo, error)
	// Chmod sets the permission bits of the named file.
	Chmod(name string, mode os.FileMode) error
}

// Default is the operating system's file system.
var Default FS = osFS{pebbleFS{pvfs.Default}}

// osFS is the operating system's file system, which pebble's lacks
// nothing of but Chmod and errors that say the disk is full: every error
// of a call that may need space is a *DiskFullError when it is one.
type osFS struct{ pebbleFS }

func (osFS) Chmod(name string, mode os.FileMode) error { return os.Chmod(name, mode) }

func (o osFS) Create(name string) (File, error) {
	f, err := o.pebbleFS.Create(name)
	return wrapOSFile(name, f, err)
}

func (o osFS) OpenReadWrite(name string) (File, error) {
	f, err := o.pebbleFS.OpenReadWrite(name)
	return wrapOSFile(name, f, err)
}

func (o osFS) OpenDir(name string) (File, error) {
	f, err := o.pebbleFS.OpenDir(name)
	return wrapOSFile(name, f, err)
}

func (o osFS) Open(name string) (File, error) {
	f, err := o.pebbleFS.Open(name)
	return wrapOSFile(name, f, err)
}

func (o osFS) Rename(oldname, newname string) error {
	return diskFull(newname, o.pebbleFS.Rename(oldname, newname))
}

func (o osFS) MkdirAll(dir string, perm os.FileMode) error {
	return diskFull(dir, o.pebbleFS.MkdirAll(dir, perm))
}

// osFile is a file of the operating system's, whose writes and syncs
// report a full disk as a *DiskFullError.
type osFile struct {
	File
	name string
}

func wrapOSFile(name string, f File, err error) (File, error) {
	if err != nil {
		return nil, diskFull(name, err)
	}
	return &osFile{File: f, name: name}, nil
}

func (f *osFile) Write(p []byte) (int, error) {
	n, err := f.File.Write(p)
	return n, diskFull(f.name, err)
}

func (f *osFile) WriteAt(p []byte, off int64) (int, error) {
	n, err := f.File.WriteAt(p, off)
	return n, diskFull(f.name, err)
}

func (f *osFile) Sync() error { return diskFull(f.name, f.File.Sync()) }

func (f *osFile) SyncData() error { return diskFull(f.name, f.File.SyncData()) }

// pebbleFS adapts a pebble vfs.FS to FS.
type pebbleFS struct{ fs pvfs.FS }

func (p pebbleFS) Create(name string) (File, error) { return file(p.fs.Create(name)) }
func (p pebbleFS) Open(name string) (File, error)   { return file(p.fs.Open(name)) }
func (p pebbleFS) OpenReadWrite(name string) (File, error) {
	return file(p.fs.OpenReadWrite(name))
}
func (p pebbleFS) OpenDir(name string) (File, error) {
	return file(p.fs.OpenDir(name))
}
func (p pebbleFS) Rename(oldname, newname string) error        { return p.fs.Rename(oldname, newname) }
func (p pebbleFS) Remove(name string) error                    { return p.fs.Remove(name) }
func (p pebbleFS) MkdirAll(dir string, perm os.FileMode) error { return p.fs.MkdirAll(dir, perm) }
func (p pebbleFS) List(dir string) ([]string, error)           { return p.fs.List(dir) }
func (p pebbleFS) Stat(name string) (os.FileInfo, error)       { return p.fs.Stat(name) }

// Chmod does nothing: pebble's file systems other than the operating
// system's (the in-memory one) keep no permission bits.
func (pebbleFS) Chmod(string, os.FileMode) error { return nil }

// file converts pebble's file to ours without turning a nil file into a
// non-nil interface.
func file(f pvfs.File, err error) (File, error) {
	if err != nil {
		return nil, err
	}
	return f, nil
}

// MemFS is an in-memory file system that remembers what has been synced,
// so a test can simulate a machine crash: Crash makes every later write
// non-durable (the process is dead as far as the disk is concerned), and
// Restart throws away everything that was not synced before Crash.
type MemFS struct {
	pebbleFS
	mem *pvfs.MemFS
}

// NewMem returns an empty in-memory file system.
func NewMem() *MemFS {
	m := pvfs.NewStrictMem()
	return &MemFS{pebbleFS: pebbleFS{m}, mem: m}
}

// Crash stops anything from becoming durable: syncs succeed but do nothing
// until Restart. Call it at the moment the simulated process dies, then
// stop whatever still uses the file system, then Restart.
func (m *MemFS) Crash() { m.mem.SetIgnoreSyncs(true) }

// Restart discards every change that was not synced before Crash, as a
// reboot would, and makes syncs work again.
func (m *MemFS) Restart() {
	m.mem.ResetToSyncedState()
	m.mem.SetIgnoreSyncs(false)
}
