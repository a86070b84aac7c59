package pageserver

import (
	"testing"

	"github.com/jackc/pgx/v5"
)

// The helpers the external test package (oracle_test.go) uses.
var (
	StartPageServerProcess = startPageServerProcess
	AssertCleanStart       = assertCleanStart
	NewClusterFromTar      = newClusterFromTar
	TakeBasebackup         = takeBasebackup
	IngestWALEach          = ingestWALEach
	QueryInt               = queryInt
	CreateImportedTenant   = createImportedTenant
	StartFromBasebackup    = startFromBasebackup
	CallMeMaybe            = callMeMaybe
	Connect                = connect
	WaitIngested           = waitIngested
	DumpAll                = dumpAll
	LeavePrepared          = leavePrepared
	CompareDumps           = compareDumps
	Amcheck                = amcheck
	ReadControl            = readControl
	Rows                   = rows
	BranchNamed            = branchNamed
	OpenTestRedoManager    = openTestRedoManager
	OpenIngestRepo         = openIngestRepo
	ImportStartedCluster   = importStartedCluster
	ManySubtransactions    = manySubtransactions
	IngestWAL              = ingestWAL
)

// PageServerProcess is a `zenith pageserver run` process (e2e_test.go).
type PageServerProcess = pageServerProcess

// Dir is the page server's directory.
func (p *pageServerProcess) Dir() string { return p.dir }

// Connect opens a page service connection, closed when the test ends.
func (p *pageServerProcess) Connect(t *testing.T) *pgx.Conn { return p.connect(t) }

// Kill sends SIGKILL and waits for the process to be gone.
func (p *pageServerProcess) Kill(t *testing.T) { p.kill(t) }

// Restart starts the process again on the same directory and ports.
func (p *pageServerProcess) Restart() error { return p.restart() }

// Stop sends SIGTERM and expects exit status 0.
func (p *pageServerProcess) Stop(t *testing.T) { p.stop(t) }
