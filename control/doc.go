// Package control holds the user-facing commands of zenith and the local
// environment they manage: the repository directory, the page server and
// safekeeper processes (by pidfile), and compute nodes.
//
// The CLI never reads the page server's repository files itself; it asks
// the page server. Nothing here may leave a process running that the user
// did not ask for, or signal a pid it has not verified is ours.
package control
