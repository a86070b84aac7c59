package pageserver

import (
	"context"
	"encoding/binary"
	"errors"
	"testing"

	"github.com/zenithdb/zenith/repo/pgdata"
)

// logicalMessage is the main data of a logical message record
// (xl_logical_message) with prefix and message.
func logicalMessage(prefix, message string) []byte {
	b := make([]byte, 24)
	binary.LittleEndian.PutUint32(b[0:], 5)
	binary.LittleEndian.PutUint64(b[8:], uint64(len(prefix)+1))
	binary.LittleEndian.PutUint64(b[16:], uint64(len(message)))
	b = append(b, prefix...)
	b = append(b, 0)
	return append(b, message...)
}

func TestParseIngestFailpoint(t *testing.T) {
	for _, tc := range []struct {
		spec    string
		message string
		after   pgdata.LSN
		bad     bool
	}{
		{spec: "message:stop-here", message: "stop-here"},
		{spec: "message:a:b", message: "a:b"},
		{spec: "lsn:0/16B3748", after: 0x16B3748},
		{spec: "message:", bad: true},
		{spec: "lsn:nope", bad: true},
		{spec: "lsn", bad: true},
		{spec: "always", bad: true},
	} {
		fp, err := parseIngestFailpoint(tc.spec)
		if tc.bad {
			if err == nil {
				t.Errorf("parseIngestFailpoint(%q) = %+v, want an error", tc.spec, fp)
			}
			continue
		}
		if err != nil || fp.message != tc.message || fp.after != tc.after {
			t.Errorf("parseIngestFailpoint(%q) = %+v, %v; want message %q, after %v", tc.spec, fp, err, tc.message, tc.after)
		}
	}
}

// countingIngester counts the records it is given.
type countingIngester struct{ n int }

func (c *countingIngester) Ingest(context.Context, *pgdata.Record) error { c.n++; return nil }
func (c *countingIngester) SystemID() uint64                             { return 1 }

func TestFailingIngester(t *testing.T) {
	record := func(rmgr pgdata.RmgrID, lsn pgdata.LSN, data []byte) *pgdata.Record {
		r := &pgdata.Record{LSN: lsn, EndLSN: lsn + 64, MainData: data}
		r.Header.Rmid = rmgr
		return r
	}
	for _, tc := range []struct {
		name string
		spec string
		rec  *pgdata.Record
		fail bool
	}{
		{"the message", "message:stop", record(pgdata.RmgrLogicalMessage, 0x1000, logicalMessage("stop", "x")), true},
		{"another prefix", "message:stop", record(pgdata.RmgrLogicalMessage, 0x1000, logicalMessage("stopper", "x")), false},
		{"a prefix of the prefix", "message:stop", record(pgdata.RmgrLogicalMessage, 0x1000, logicalMessage("sto", "x")), false},
		{"another rmgr", "message:stop", record(pgdata.RmgrHeap, 0x1000, logicalMessage("stop", "x")), false},
		{"truncated message", "message:stop", record(pgdata.RmgrLogicalMessage, 0x1000, logicalMessage("stop", "")[:26]), false},
		{"before the LSN", "lsn:0/2000", record(pgdata.RmgrHeap, 0x1000, nil), false},
		{"ending after the LSN", "lsn:0/2000", record(pgdata.RmgrHeap, 0x1fe0, nil), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			fp, err := parseIngestFailpoint(tc.spec)
			if err != nil {
				t.Fatal(err)
			}
			inner := &countingIngester{}
			err = failingIngester{Ingester: inner, fp: fp}.Ingest(context.Background(), tc.rec)
			if got := errors.Is(err, ErrInjectedIngestFailure); got != tc.fail {
				t.Errorf("Ingest: err = %v, want injected failure %v", err, tc.fail)
			}
			if want := map[bool]int{true: 0, false: 1}[tc.fail]; inner.n != want {
				t.Errorf("the real ingest saw %d records, want %d", inner.n, want)
			}
		})
	}
}
