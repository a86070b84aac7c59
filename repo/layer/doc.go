// Package layer holds the three kinds of layers a timeline's history is
// made of, and the format of layer files.
//
//   - An in-memory layer takes incoming values; once frozen it is
//     immutable and is written out as a delta layer file.
//   - A delta layer file holds every value of a key range stored in an LSN
//     range [start, end).
//   - An image layer file holds, for every key that exists at one LSN in a
//     key range, the key's image as of that LSN. It covers its range
//     completely: a key of the range that is not in it does not exist at
//     that LSN.
//
// Layer files are sorted tables written with
// github.com/cockroachdb/pebble/sstable (checksummed, compressed blocks and
// an index). An sstable key is the 18-byte repository key followed by the
// 8-byte big-endian LSN, so one key's versions are adjacent and in LSN
// order; the sstable value is the encoded value (package value). An image
// layer is the same format with every entry at the layer's LSN.
//
// After the sstable comes a trailer of our own: a magic string, the layer's
// kind, key range and LSN range, the sstable's size, a CRC32C of the
// sstable's last 64 bytes (pebble's footer carries no checksum) and a
// CRC32C of the trailer. With pebble's per-block checksums this means that
// every byte that a read depends on is checked: a flipped byte or a
// truncated file is a *CorruptionError naming the file, never wrong data.
// A layer file's name is its key range and LSN range (FileName), and the
// trailer must agree with the name.
//
// This package never decides which layers exist: the layer map and the
// timeline's metadata do. Files are written under a temporary name and
// renamed once complete and fsynced; the caller fsyncs the directory.
package layer
