package pageserver

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/zenithdb/zenith/pageserver/api"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// firstRecordAfter returns where the record after a record end lies: at
// the end MAXALIGNed, or after the page header when that is a page start
// (XLogLongPageHeaderData at a segment start, XLogPageHeaderData else).
func firstRecordAfter(end pgdata.LSN) pgdata.LSN {
	at := (end + 7) &^ 7
	switch {
	case uint64(at)%pgdata.WALSegmentSize == 0:
		return at + 40
	case at%8192 == 0:
		return at + 24
	}
	return at
}

// flipWALByte inverts the byte at lsn in every safekeeper's copy of the
// timeline's WAL.
func flipWALByte(t *testing.T, sks *testSafekeepers, c *skCompute, lsn pgdata.LSN) {
	t.Helper()
	for _, nd := range sks.nodes {
		name := pgdata.WALFileName(1, lsn.SegmentNo(pgdata.WALSegmentSize), pgdata.WALSegmentSize)
		f, err := os.OpenFile(filepath.Join(nd.cfg.Dir, c.tenant.String(), c.timeline.String(), name), os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 1)
		off := int64(lsn.SegmentOffset(pgdata.WALSegmentSize))
		if _, err := f.ReadAt(b, off); err != nil {
			t.Fatal(err)
		}
		b[0] ^= 0xff
		_, err = f.WriteAt(b, off)
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			t.Fatal(err)
		}
	}
}

// TestWalReceiverRetriesWALThatDoesNotDecode: the safekeepers serve WAL
// in which a record after the last one the page server ingested does not
// decode (a byte of it flipped in every copy). The receiver does not stop
// for good: it reports the error, counts it, cuts its WAL store back and
// connects again, ever more slowly while the source stays bad; once the
// WAL is right again it ingests everything.
func TestWalReceiverRetriesWALThatDoesNotDecode(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	ps, conn, sks, c, cc := startSafekeeperTable(ctx, t)

	// Stop streaming; the compute goes on with the safekeepers.
	if err := c.wal.SetSource(""); err != nil {
		t.Fatal(err)
	}
	ingested := waitFor(t, "streaming stopped", c.wal.Status, func(st api.WALStatus) bool { return !st.Connected }).Ingested
	exec(t, cc, "INSERT INTO t SELECT generate_series(2, 1000)")
	end := queryLSN(ctx, t, cc, "SELECT pg_current_wal_flush_lsn()")
	for i := range sks.nodes {
		waitFor(t, fmt.Sprintf("safekeeper %d to have the WAL up to %v", i+1, end), func() pgdata.LSN {
			return sks.state(i, c.tenant, c.timeline).FlushLSN
		}, func(flush pgdata.LSN) bool { return flush >= end })
	}
	// xl_xid of the first record the page server lacks: its CRC fails.
	bad := firstRecordAfter(ingested) + 4
	if bad >= end {
		t.Fatalf("no record between the page server's %v and the compute's %v", ingested, end)
	}
	flipWALByte(t, sks, c, bad)
	t.Logf("flipped the WAL byte at %v (ingested up to %v, WAL up to %v)", bad, ingested, end)
	if err := c.wal.SetSafekeepers(c.tenant, sks.addrs()); err != nil {
		t.Fatal(err)
	}

	// Four decode errors, each noted when the count moves.
	var at []time.Time
	var st api.WALStatus
	for deadline := time.Now().Add(time.Minute); len(at) < 4; time.Sleep(10 * time.Millisecond) {
		st = c.wal.Status()
		for uint64(len(at)) < st.DecodeErrors {
			at = append(at, time.Now())
		}
		if time.Now().After(deadline) {
			t.Fatalf("after a minute %d decode errors, want 4: the receiver stopped retrying (status %+v)", len(at), st)
		}
	}
	if !strings.Contains(st.LastError, "decode WAL") {
		t.Errorf("last error %q, want the decode error", st.LastError)
	}
	if st.Received > bad {
		t.Errorf("WAL store ends at %v, past the bad record at %v: it was not cut back", st.Received, bad)
	}
	// Backoff doubles from minBackoff: the fourth attempt waits 4 times
	// as long; a receiver reconnecting at once or at a fixed pace does not.
	if gap := at[3].Sub(at[2]); gap < 3*minBackoff {
		t.Errorf("%v between the third and fourth decode error, want at least %v: the backoff does not grow", gap, 3*minBackoff)
	}

	flipWALByte(t, sks, c, bad)
	last := waitIngested(t, conn, c.tenant, cc)
	st = waitFor(t, "streaming again", c.wal.Status, func(st api.WALStatus) bool { return st.Connected && st.LastError == "" })
	t.Logf("after %d decode errors, ingested up to %v", st.DecodeErrors, last)
	metric := fmt.Sprintf(`zenith_pageserver_wal_decode_errors_total{tenant_id=%q,timeline_id=%q} %d`, c.tenant, c.timeline, st.DecodeErrors)
	if metrics := httpGet(t, "http://"+ps.httpAddr+"/metrics"); !strings.Contains(metrics, metric+"\n") {
		t.Errorf("metrics lack %s", metric)
	}
}
