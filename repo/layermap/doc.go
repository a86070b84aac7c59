// Package layermap answers, for one timeline, which layer holds the
// newest values of a key below an LSN, and which key ranges image layers
// cover, for reads, compaction and garbage collection.
//
// A Map is immutable: changes make a new Map (With), so a reader keeps a
// consistent view for a whole reconstruction while flushes, compactions
// and garbage collection publish new maps. Layers are kept sorted by the
// end of their LSN range, newest first; Search walks that order, so its
// cost grows with the number of layers above the LSN read, not with the
// amount of data. That is enough for the hundreds of layers a timeline has;
// an interval tree would be the next step if timelines grow to many
// thousands.
//
// The map relies on two invariants its users keep: for any key, delta
// layers do not overlap in LSN; and an image layer at LSN X holds every key
// of its range that exists at X, so any older layer of that range is only
// needed for reads below X.
package layermap
