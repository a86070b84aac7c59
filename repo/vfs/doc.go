// Package vfs is the file-system seam under the repository: every file the
// repository writes or reads (layer files, metadata, tenant config) goes
// through an FS, so that tests can inject failures (a failed fsync, a
// failed rename) with Faulty and simulate a crash that loses everything
// not yet fsynced with MemFS.
//
// The interface is the small subset of github.com/cockroachdb/pebble/vfs
// that the repository needs, plus Chmod (which the in-memory file system
// ignores); Default is the operating system's file system, and NewMem
// builds on pebble's strict in-memory file system, which tracks what has
// been synced.
//
// WriteFileAtomic (temporary file, fsync, rename, directory fsync) and
// SyncDir are how every package of Zenith replaces a small file durably
// and makes a directory's entries durable, on Default or on a test's file
// system. This package never decides durability policy beyond that:
// callers choose what to fsync and when.
package vfs
