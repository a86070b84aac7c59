package datadir

import "github.com/zenithdb/zenith/pageserver/pstest"

// The shared fixtures (pageserver/pstest), under the names the tests use.
type noRedo = pstest.NoRedo

var (
	openTestRepo    = pstest.OpenRepo
	newTestTimeline = pstest.NewTimeline
)
