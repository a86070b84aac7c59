package repo

import (
	"context"

	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/key"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/value"
)

// Redo rebuilds a page from a base image and the records after it: WAL
// records through PostgreSQL (package walredo), Go-applied operations in
// Go. The repository calls it from Get whenever a key's newest value is not
// an image.
type Redo interface {
	// Apply returns the value of k at lsn: base (nil when the history
	// starts with a will_init record, or has no image at all) with records
	// applied, oldest first. It must not modify base or the records.
	Apply(ctx context.Context, tenant id.TenantID, k key.Key, base []byte, records []value.Record, lsn pgdata.LSN) ([]byte, error)
}
