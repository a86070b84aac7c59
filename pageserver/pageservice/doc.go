// Package pageservice is the page server's libpq endpoint: Service, a
// pgwire.Handler that runs one command per query (the grammar and the
// typed commands are package api's): the management commands answered
// with text rows, basebackup as COPY OUT, import as COPY IN, and the
// page stream as COPY BOTH, where each GetPage, Exists, Nblocks or DbSize
// request is answered from a datadir.DatadirReader at the request's LSN.
// A physical replication session (replication=true, a read replica's
// walreceiver) runs PostgreSQL's replication commands instead, served
// from the timeline's WAL store (replication.go).
//
// It holds no tenant of its own: what it knows of tenants, branches and
// timelines it asks of a Tenants, which package pageserver implements on
// its tenant manager. It decides what a command needs of a token
// (CommandNeeds, with authorize) and which SQLSTATE an error gets
// (SQLError, which the HTTP API, package httpapi, uses too, so that one error has
// one code): the tenant manager's errors are sentinels of repo and api.
// Its Prometheus collectors (Metrics) are made and registered by the
// server.
//
// What it must never do: answer a page request with a page it did not
// read at the request's LSN, serve the latest state of a timeline
// whose ingest stopped (LatestLSN), or send a replica WAL beyond what
// the page server has durably stored.
package pageservice
