// Package pgwire speaks PostgreSQL's frontend/backend protocol (version 3)
// for Zenith's servers and clients: the page server's page service, the
// safekeepers' WAL service, the replication clients that pull WAL from
// a compute or a safekeeper, and the walsender loop (walsender.go:
// SendWAL over a WALSource, START_REPLICATION's grammar) that the
// safekeepers and the page server both serve WAL with.
//
// The server side accepts SSLRequest (TLS through crypto/tls when
// configured), a startup message, optional password authentication (the
// password carries a token), and then simple and extended queries, which
// it hands to a Handler as command strings. A Handler answers with rows, a
// COPY OUT stream, or a COPY BOTH stream; an *Error becomes an ErrorResponse
// with its SQLSTATE and the session goes on.
//
// Message encoding comes from github.com/jackc/pgx/v5/pgproto3, the
// maintained successor of jackc/pgproto3/v2 that DESIGN.md names: the v2
// module is frozen, and the replication client needs pgx/v5's pgconn,
// which uses the v5 package. One copy of the protocol code serves both.
//
// This package knows nothing of pages, tenants or WAL content: it moves
// messages. It must never trust a length or a string from the peer without
// checking it.
package pgwire
