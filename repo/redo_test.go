package repo

import (
	"context"

	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/value"
)

// nopRedo satisfies Config.Validate in tests that never read.
type nopRedo struct{}

func (nopRedo) Apply(context.Context, id.TenantID, key.Key, []byte, []value.Record, pgdata.LSN) ([]byte, error) {
	return nil, nil
}
