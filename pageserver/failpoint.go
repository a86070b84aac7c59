package pageserver

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/zenithdb/zenith/pageserver/walreceiver"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// FailIngestEnv names the environment variable of the page server process
// that injects an ingest failure, for tests of what happens when ingest
// stops (the WAL is still received, stored and acknowledged; reads after
// the point fail at once; a restart without the variable resumes). Its
// value is one of:
//
//	message:PREFIX  the ingest of a logical message whose prefix is PREFIX
//	                fails (SELECT pg_logical_emit_message(false, 'PREFIX', '')
//	                writes one on a compute at a point the test chooses)
//	lsn:X           the ingest of the first record that ends after LSN X fails
//
// The failure is ErrInjectedIngestFailure, on every timeline of the page
// server, every time such a record is ingested while the variable is set.
// Never set it outside tests.
const FailIngestEnv = "ZENITH_PAGESERVER_FAIL_INGEST"

// ErrInjectedIngestFailure is the failure FailIngestEnv injects.
var ErrInjectedIngestFailure = errors.New("injected ingest failure")

// ingestFailpoint is a parsed FailIngestEnv: the records whose ingest
// fails.
type ingestFailpoint struct {
	spec    string
	message string     // a logical message prefix ("": not by message)
	after   pgdata.LSN // records ending after it (0: not by LSN)
}

// ingestFailpointFromEnv reads FailIngestEnv; nil if it is unset.
func ingestFailpointFromEnv() (*ingestFailpoint, error) {
	v, ok := os.LookupEnv(FailIngestEnv)
	if !ok || v == "" {
		return nil, nil
	}
	return parseIngestFailpoint(v)
}

// parseIngestFailpoint parses a FailIngestEnv value.
func parseIngestFailpoint(v string) (*ingestFailpoint, error) {
	kind, arg, ok := strings.Cut(v, ":")
	fp := &ingestFailpoint{spec: v}
	switch {
	case ok && kind == "message" && arg != "":
		fp.message = arg
	case ok && kind == "lsn":
		lsn, err := pgdata.ParseLSN(arg)
		if err != nil {
			return nil, fmt.Errorf("%s=%q: %w", FailIngestEnv, v, err)
		}
		fp.after = lsn
	default:
		return nil, fmt.Errorf("%s=%q: want message:PREFIX or lsn:X", FailIngestEnv, v)
	}
	return fp, nil
}

// matches says whether the ingest of rec must fail.
func (fp *ingestFailpoint) matches(rec *pgdata.Record) bool {
	if fp.message != "" {
		prefix, ok := logicalMessagePrefix(rec)
		return ok && prefix == fp.message
	}
	return rec.EndLSN > fp.after
}

// logicalMessagePrefix returns the prefix of a logical message record
// (xl_logical_message: dbId, transactional, prefix_size, message_size,
// then the NUL-terminated prefix and the message).
func logicalMessagePrefix(rec *pgdata.Record) (string, bool) {
	const header = 24 // offsetof(xl_logical_message, message)
	if rec.Rmgr() != pgdata.RmgrLogicalMessage || rec.RmgrInfo() != 0 || len(rec.MainData) < header {
		return "", false
	}
	size := binary.LittleEndian.Uint64(rec.MainData[8:16])
	if size == 0 || size > uint64(len(rec.MainData)-header) {
		return "", false
	}
	prefix := rec.MainData[header : header+int(size)]
	return string(bytes.TrimSuffix(prefix, []byte{0})), true
}

// failingIngester is an Ingester whose ingest of the records a failpoint
// matches fails with ErrInjectedIngestFailure, before anything is written.
type failingIngester struct {
	walreceiver.Ingester
	fp *ingestFailpoint
}

func (f failingIngester) Ingest(ctx context.Context, rec *pgdata.Record) error {
	if f.fp.matches(rec) {
		return fmt.Errorf("%w (%s=%s)", ErrInjectedIngestFailure, FailIngestEnv, f.fp.spec)
	}
	return f.Ingester.Ingest(ctx, rec)
}
