package api

import "errors"

// Errors of the page server's tenant manager that its page service and
// its HTTP API both map to SQLSTATEs (42710, 42704, 2BP01, 55000), so
// that one error gets one code whichever way it is asked for.
var (
	// ErrBranchExists: a branch name taken in the tenant.
	ErrBranchExists = errors.New("branch already exists")
	// ErrBranchNotFound: no branch or timeline of that name or id.
	ErrBranchNotFound = errors.New("no such branch or timeline")
	// ErrHasChildren: deleting a branch that other branches start from.
	ErrHasChildren = errors.New("branch has child branches")
	// ErrNotRecordBoundary: an LSN where no WAL record of the timeline's
	// history ends, so no consistent state exists there.
	ErrNotRecordBoundary = errors.New("LSN is not the end of a WAL record")
)
