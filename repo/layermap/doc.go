// Package layermap answers, for one timeline, which layer holds the
// newest values of a key below an LSN, and which key ranges image layers
// cover, for reads, compaction and garbage collection.
//
// A Map is immutable: changes make a new Map (With), so a reader keeps a
// consistent view for a whole reconstruction while flushes, compactions
// and garbage collection publish new maps. Layers are kept sorted by the
// end of their LSN range, newest first; an index of the layers' key
// ranges gives Search, for a key, the layers that hold it, in that order,
// and where the first that starts below the LSN read is (a binary
// search), so a read does not walk the layers of other keys, nor those
// above its LSN.
//
// The map relies on two invariants its users keep: for any key, delta
// layers do not overlap in LSN; and an image layer at LSN X holds every key
// of its range that exists at X, so any older layer of that range is only
// needed for reads below X.
package layermap
