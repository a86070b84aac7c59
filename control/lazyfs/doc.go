// Package lazyfs serves a lazy compute's data directory through FUSE
// (DESIGN section 7, "Lazy mode"): the page server's lazy basebackup
// gives every file but the logged relations' contents, and a manifest
// of those files with their sizes. Mount serves the backing directory
// as a loopback file system in which those files are listed from the
// start and created in the backing directory, as sparse files of their
// sizes, when first looked up (creating a file costs about a millisecond
// on this machine's disk, and the catalog alone has a thousand); a read
// of a block of such a file that is not local yet is a GetPage@LSN
// request at the basebackup's LSN over the page stream (PageClient),
// written into the backing file.
//
// A block the compute writes is local for the rest of the node's life
// and served from the backing file (the overlay). Fetched blocks that
// were never written form a bounded cache: the oldest are dropped (a
// hole punched) and fetched again if read. A sequential read fetches
// the next blocks in the same pipelined batch, unless the run of reads
// it continues skipped most blocks (an index scan's heap fetches in
// heap order): then only the blocks read are fetched, until the reads
// are dense again. Every other file
// (configuration, WAL, SLRUs, relations the compute created) is a plain
// loopback file.
//
// The kernel caches every file's pages and size (the writeback cache):
// reads reach this process only on a miss, writes only when the kernel
// writes dirty pages back, in requests of up to 1 MiB, and fsync on a
// file writes its pages back and then fsyncs the backing file. Unmount
// writes all dirty pages back first.
//
// PageClient speaks to the page service as zenith's other clients do:
// TLS checked against the repository's CA, and a token (of the node's
// tenant, which the control plane mints) as the password, read from its
// file for every new connection. This package never mints or holds any
// other token.
//
// A fetch that fails or times out is EIO: an ERROR in the backend that
// read, not a PANIC. The process serving the mount is the compute's:
// if it dies, the mount answers ENOTCONN, and the control plane treats
// that as a compute crash (it stops PostgreSQL and unmounts).
//
// No file is passed through (FOPEN_PASSTHROUGH): the kernel allows no
// passthrough with the writeback cache, and the writeback cache is what
// keeps a bulk load's writes and size checks off this process (see
// docs/performance.md, "Lazy mode").
package lazyfs
