package walingest

import "github.com/zenithdb/zenith/pageserver/pstest"

// The shared fixtures (pageserver/pstest), under the names the tests use.
var (
	openTestRepo    = pstest.OpenRepo
	newTestTimeline = pstest.NewTimeline
	itemsSQL        = pstest.ItemsSQL
	exec            = pstest.Exec
	readControl     = pstest.ReadControl
)
