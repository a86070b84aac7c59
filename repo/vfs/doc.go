// Package vfs is the file-system seam under the repository: every file the
// repository writes or reads (layer files, metadata, tenant config) goes
// through an FS, so that tests can inject failures (a failed fsync, a
// failed rename) with Faulty and simulate a crash that loses everything
// not yet fsynced with MemFS.
//
// The interface is the small subset of github.com/cockroachdb/pebble/vfs
// that the repository needs; Default is the operating system's file
// system, and NewMem builds on pebble's strict in-memory file system, which
// tracks what has been synced. This package never decides durability
// policy: callers fsync files and directories themselves.
package vfs
