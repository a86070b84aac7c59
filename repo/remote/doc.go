// Package remote is the seam between the repository and remote storage:
// where layer files and per-timeline index files are uploaded so that a
// page server whose disk is lost loses nothing uploaded, and where a page
// server attaching a tenant fetches them.
//
// Storage is a small object-store interface (whole objects by
// slash-separated path: upload, download, list by prefix, delete). LocalDir
// implements it on a directory, which is the default remote (embedded,
// nothing to run); an S3-compatible implementation comes with uploads in a
// later issue. An upload must be all or nothing: a reader never sees a
// partial object, even after a crash.
package remote
