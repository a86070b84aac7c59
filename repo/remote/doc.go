// Package remote is the seam between the repository and remote storage:
// where layer files and per-timeline index files are uploaded so that a
// page server whose disk is lost loses nothing uploaded, and where a page
// server attaching a tenant fetches them.
//
// Storage is a small object-store interface (whole objects by
// slash-separated path, streamed: upload, download, list by prefix,
// delete). LocalDir implements it on a directory, which is the default
// remote (embedded, nothing to run); S3 implements it on any S3-compatible
// object store through aws-sdk-go-v2 (retries with backoff, a timeout per
// request, multipart uploads for large objects). Open picks one from a
// file:// or s3:// URL. An upload must be all or nothing: a reader never
// sees a partial object, even after a crash.
package remote
