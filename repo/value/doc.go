// Package value defines what the repository stores under a key at an LSN,
// and how it is encoded in layer files.
//
// A value is one of:
//   - an image: the whole page (or the whole small file) as of the LSN;
//   - a WAL record: the raw PostgreSQL record, to be replayed by WAL redo,
//     with a will_init flag when replay needs no earlier version of the page
//     (a full-page image, or an INIT record such as XLOG_HEAP_INIT_PAGE);
//   - a Go-applied operation: a change the page server applies itself
//     rather than through PostgreSQL (set CLOG status bits, write multixact
//     offsets or members, clear visibility-map bits, truncate the
//     visibility map); see Op.
//
// The encoding is one header byte (the kind in the low bits, 0x80 for
// will_init) followed by the payload; operations start their payload with
// an operation code. Decode reads bytes from layer files, which are outside
// input: it returns an error for anything malformed and never panics.
package value
