// Package api is what the page service's client and server share, so that
// the protocol is written once: the rule for branch and node names, how a
// reference to a timeline is written (a branch name or a timeline id), and
// the start point of a new branch, BRANCH[@LSN|@RFC3339], as a type with a
// Parse/String pair, and every command of the page service as a typed
// value (Command: BranchCreate, Basebackup, PageStream, ...) that the
// client writes with String and the server reads with ParseCommand, and
// the page stream's binary messages (pagestream.go: PageRequest and the
// responses, each with its Tag byte), which control/lazyfs writes and
// reads, and the page server's tenant-manager errors (errors.go) that its
// page service and HTTP API both map to SQLSTATEs. The control plane (the client) and the page server both import
// it; it imports only repo/id, repo/pgdata and pgwire (for the SQLSTATE an
// error response falls back to).
//
// What it must never do: depend on either side (no I/O, no server or CLI
// state), or accept on one side what the other refuses.
package api
