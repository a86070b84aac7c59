package layer

import "github.com/zenithdb/zenith/repo/key"

// Layer is a piece of a timeline's history: the values of a key range in an
// LSN range.
type Layer interface {
	Desc() Desc
	// Collect adds to st the values of k at LSNs in lsns (clipped to the
	// layer's own range), newest first, stopping at the first that
	// initializes the page; it sets st.Complete if nothing older is
	// needed.
	Collect(k key.Key, lsns LSNRange, st *ReconstructState) error
}

var (
	_ Layer = (*MemLayer)(nil)
	_ Layer = (*File)(nil)
)
