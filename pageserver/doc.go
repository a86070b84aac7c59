// Package pageserver is Zenith's page server: it ingests WAL for every
// timeline of every tenant, stores it in the repository, and serves pages
// as of any LSN (GetPage@LSN), basebackups, and the management commands,
// over the libpq protocol (the page service) and HTTP.
//
// It must never serve a page it could not reconstruct exactly, and never
// acknowledge WAL before it is durable.
package pageserver
