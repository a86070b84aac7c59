package vfs

import (
	"errors"
	"fmt"
	"os"
	"sync"
)

// Op names a file-system operation, for fault injection.
type Op string

// The operations Faulty can fail.
const (
	OpCreate  Op = "create"
	OpOpen    Op = "open"
	OpOpenRW  Op = "openrw"
	OpOpenDir Op = "opendir"
	OpRead    Op = "read"
	OpWrite   Op = "write"
	OpSync    Op = "sync"
	OpRename  Op = "rename"
	OpRemove  Op = "remove"
	OpMkdir   Op = "mkdir"
	OpList    Op = "list"
	OpStat    Op = "stat"
	OpChmod   Op = "chmod"
)

// ErrInjected is the error that injected faults wrap.
var ErrInjected = errors.New("injected fault")

// Rule decides whether an operation fails: it returns nil to let it run, or
// the error to fail it with. For OpRename, name is the old name. For
// operations on an open file, name is the name the file was opened by.
type Rule func(op Op, name string) error

// Faulty wraps a file system and fails the operations a Rule picks.
type Faulty struct {
	fs   FS
	mu   sync.Mutex
	rule Rule
}

// NewFaulty wraps fs; with no rule set, every operation goes through.
func NewFaulty(fs FS) *Faulty { return &Faulty{fs: fs} }

// SetRule replaces the rule; nil removes it.
func (f *Faulty) SetRule(r Rule) {
	f.mu.Lock()
	f.rule = r
	f.mu.Unlock()
}

// FailOnce returns a rule that fails the first operation op on a name
// matching match, with an error wrapping ErrInjected, and lets every
// other operation through.
func FailOnce(op Op, match func(name string) bool) Rule {
	var once sync.Once
	return func(o Op, name string) error {
		if o != op || !match(name) {
			return nil
		}
		var err error
		once.Do(func() { err = fmt.Errorf("%s %s: %w", op, name, ErrInjected) })
		return err
	}
}

func (f *Faulty) check(op Op, name string) error {
	f.mu.Lock()
	r := f.rule
	f.mu.Unlock()
	if r == nil {
		return nil
	}
	return r(op, name)
}

func (f *Faulty) wrap(op Op, name string, open func(string) (File, error)) (File, error) {
	if err := f.check(op, name); err != nil {
		return nil, err
	}
	file, err := open(name)
	if err != nil {
		return nil, err
	}
	return &faultyFile{File: file, fs: f, name: name}, nil
}

// Create implements FS.
func (f *Faulty) Create(name string) (File, error) { return f.wrap(OpCreate, name, f.fs.Create) }

// Open implements FS.
func (f *Faulty) Open(name string) (File, error) { return f.wrap(OpOpen, name, f.fs.Open) }

// OpenReadWrite implements FS.
func (f *Faulty) OpenReadWrite(name string) (File, error) {
	return f.wrap(OpOpenRW, name, f.fs.OpenReadWrite)
}

// OpenDir implements FS.
func (f *Faulty) OpenDir(name string) (File, error) { return f.wrap(OpOpenDir, name, f.fs.OpenDir) }

// Rename implements FS.
func (f *Faulty) Rename(oldname, newname string) error {
	if err := f.check(OpRename, oldname); err != nil {
		return err
	}
	return f.fs.Rename(oldname, newname)
}

// Remove implements FS.
func (f *Faulty) Remove(name string) error {
	if err := f.check(OpRemove, name); err != nil {
		return err
	}
	return f.fs.Remove(name)
}

// MkdirAll implements FS.
func (f *Faulty) MkdirAll(dir string, perm os.FileMode) error {
	if err := f.check(OpMkdir, dir); err != nil {
		return err
	}
	return f.fs.MkdirAll(dir, perm)
}

// Chmod implements FS.
func (f *Faulty) Chmod(name string, mode os.FileMode) error {
	if err := f.check(OpChmod, name); err != nil {
		return err
	}
	return f.fs.Chmod(name, mode)
}

// List implements FS.
func (f *Faulty) List(dir string) ([]string, error) {
	if err := f.check(OpList, dir); err != nil {
		return nil, err
	}
	return f.fs.List(dir)
}

// Stat implements FS.
func (f *Faulty) Stat(name string) (os.FileInfo, error) {
	if err := f.check(OpStat, name); err != nil {
		return nil, err
	}
	return f.fs.Stat(name)
}

type faultyFile struct {
	File
	fs   *Faulty
	name string
}

func (f *faultyFile) Read(p []byte) (int, error) {
	if err := f.fs.check(OpRead, f.name); err != nil {
		return 0, err
	}
	return f.File.Read(p)
}

func (f *faultyFile) ReadAt(p []byte, off int64) (int, error) {
	if err := f.fs.check(OpRead, f.name); err != nil {
		return 0, err
	}
	return f.File.ReadAt(p, off)
}

func (f *faultyFile) Write(p []byte) (int, error) {
	if err := f.fs.check(OpWrite, f.name); err != nil {
		return 0, err
	}
	return f.File.Write(p)
}

func (f *faultyFile) WriteAt(p []byte, off int64) (int, error) {
	if err := f.fs.check(OpWrite, f.name); err != nil {
		return 0, err
	}
	return f.File.WriteAt(p, off)
}

func (f *faultyFile) Sync() error {
	if err := f.fs.check(OpSync, f.name); err != nil {
		return err
	}
	return f.File.Sync()
}

// SyncData is an OpSync too: a rule that fails fsyncs fails fdatasyncs.
func (f *faultyFile) SyncData() error {
	if err := f.fs.check(OpSync, f.name); err != nil {
		return err
	}
	return f.File.SyncData()
}

// CrashAt returns a rule that lets step-1 operations through and, at the
// step-th, crashes mem (MemFS.Crash) and fails that operation: a test
// that runs an operation once with each step, restarting mem in between,
// sees a machine crash at every file-system operation it makes.
func CrashAt(mem *MemFS, step int) Rule {
	var mu sync.Mutex
	ops := 0
	return func(op Op, name string) error {
		mu.Lock()
		defer mu.Unlock()
		if ops++; ops == step {
			mem.Crash()
			return fmt.Errorf("crash at %s %s: %w", op, name, ErrInjected)
		}
		return nil
	}
}
