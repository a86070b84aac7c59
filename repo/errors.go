package repo

import (
	"errors"

	"github.com/zenithdb/zenith/repo/layer"
)

// Errors callers can branch on.
var (
	// ErrTenantNotFound: no tenant with that id.
	ErrTenantNotFound = errors.New("tenant not found")
	// ErrTenantExists: CreateTenant of an id that exists.
	ErrTenantExists = errors.New("tenant already exists")
	// ErrTimelineNotFound: no timeline with that id in the tenant.
	ErrTimelineNotFound = errors.New("timeline not found")
	// ErrTimelineExists: creating a timeline whose id exists.
	ErrTimelineExists = errors.New("timeline already exists")
	// ErrTimelineHasChildren: deleting a timeline that child timelines
	// branch from.
	ErrTimelineHasChildren = errors.New("timeline has child timelines")
	// ErrBranchBeforeGCCutoff: a branch point below the ancestor's GC
	// cut-off, whose history may be gone.
	ErrBranchBeforeGCCutoff = errors.New("branch point is before the ancestor's GC cut-off")
	// ErrBranchAfterLastLSN: a branch point after the last record the
	// ancestor has ingested.
	ErrBranchAfterLastLSN = errors.New("branch point is after the ancestor's last record LSN")
	// ErrBelowGCCutoff: a read below the timeline's GC cut-off (or below
	// its branch point, where its history starts).
	ErrBelowGCCutoff = errors.New("LSN is below the timeline's GC cut-off")
	// ErrLSNNotReached: a read above the last ingested record; wait for it
	// with WaitForLSN first.
	ErrLSNNotReached = errors.New("LSN not ingested yet")
	// ErrLSNOrder: a Put at or below the last record LSN, or a FinishWrite
	// that goes backwards or below a pending Put.
	ErrLSNOrder = errors.New("LSN out of order")
	// ErrKeyNotFound: the key has no value at or below the LSN.
	ErrKeyNotFound = errors.New("key not found")
	// ErrClosed: the repository is closed.
	ErrClosed = errors.New("repository closed")
)

// CorruptionError reports a file of the repository (a layer file or a
// metadata file) that fails a check, naming it.
type CorruptionError = layer.CorruptionError
