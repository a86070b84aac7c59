package pageserver

import (
	"bytes"
	"context"
	"testing"

	"github.com/zenithdb/zenith/pageserver/basebackup"
	"github.com/zenithdb/zenith/pageserver/pstest"
	"github.com/zenithdb/zenith/pageserver/walreceiver"
	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// The shared fixtures (pageserver/pstest), under the names the tests use.
var (
	openTestRepo      = pstest.OpenRepo
	newTestTimeline   = pstest.NewTimeline
	exec              = pstest.Exec
	readControl       = pstest.ReadControl
	newClusterFromTar = pstest.NewClusterFromTar
	assertCleanStart  = pstest.AssertCleanStart
	connect           = pstest.Connect
	queryInt          = pstest.QueryInt
	wantRows          = pstest.WantRows
)

// takeBasebackup returns a basebackup of tl at lsn.
func takeBasebackup(t *testing.T, tl *repo.Timeline, lsn pgdata.LSN, opts basebackup.Options) []byte {
	t.Helper()
	var buf bytes.Buffer
	if err := basebackup.Basebackup(context.Background(), tl, lsn, &buf, opts); err != nil {
		t.Fatal(err)
	}
	return buf.Bytes()
}

// The receiver's timing, as its tests here wait on it.
const (
	minBackoff = walreceiver.MinBackoff
	switchIdle = walreceiver.SwitchIdle
)
