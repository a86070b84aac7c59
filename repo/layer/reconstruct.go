package layer

import (
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/value"
)

// ReconstructState accumulates what rebuilding one key at one LSN needs,
// as the layers are visited from newest to oldest.
type ReconstructState struct {
	// Records are the records and operations found so far, newest first.
	Records []value.Record
	// Image is the base image, once found, stored at ImageLSN.
	Image    []byte
	ImageLSN pgdata.LSN
	// Complete is set once nothing older is needed: an image or a
	// will_init record was found, or an image layer showed that the key
	// did not exist.
	Complete bool
}

// Found reports whether anything was found for the key.
func (s *ReconstructState) Found() bool { return s.Image != nil || len(s.Records) > 0 }

// add takes one value, newer than everything added so far except in LSN
// order from newest to oldest.
func (s *ReconstructState) add(lsn pgdata.LSN, v value.Value) {
	if v.Kind == value.KindImage {
		s.Image, s.ImageLSN = v.Data, lsn
		if s.Image == nil {
			s.Image = []byte{}
		}
	} else {
		s.Records = append(s.Records, value.Record{LSN: lsn, Value: v})
	}
	s.Complete = v.Initializes()
}
