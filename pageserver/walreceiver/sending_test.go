package walreceiver

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/pgwire"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// readStream reads what a stream from start sends up to what Servable
// says, as pgwire.SendWAL does.
func readStream(t *testing.T, src pgwire.WALSource, start pgdata.LSN) []byte {
	t.Helper()
	end, _, err := src.Servable(start)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, end-start)
	ok, err := src.ReadWAL(b, start)
	if err != nil || !ok {
		t.Fatalf("ReadWAL(%d bytes at %v) = %v, %v", len(b), start, ok, err)
	}
	return b
}

// noIngest is the Ingester of a receiver that only serves stored WAL.
type noIngest struct{}

func (noIngest) Ingest(context.Context, *pgdata.Record) error {
	return errors.New("a receiver that only serves stored WAL ingests nothing")
}

func (noIngest) SystemID() uint64 { return 0 }

// TestSenderServesStoredWAL: a replica's stream gets the stored WAL up to
// the sendable end, from where the store begins when it asks from the
// start of that segment (as a stock standby does); a start after the
// end, or below WAL the store removed, is refused, the latter in
// PostgreSQL's words; and a cut of the store below what a stream sent
// ends that stream, while one that sent less goes on.
func TestSenderServesStoredWAL(t *testing.T) {
	wal := spanWAL(t)
	s, recs := spanStore(t, t.TempDir(), 17)
	r := NewWalReceiver(nil, noIngest{}, s, zerolog.Nop())
	if got := r.SendableLSN(); got != spanEnd {
		t.Fatalf("SendableLSN of a synced store = %v, want its end %v", got, spanEnd)
	}
	segStart := spanStart - pgdata.LSN(spanStart.SegmentOffset(spanSegSize))
	src, start, err := r.Sender(segStart)
	if err != nil || start != spanStart {
		t.Fatalf("Sender(%v) = %v, %v; want a stream from the store's start %v", segStart, start, err, spanStart)
	}
	if got := readStream(t, src, start); !bytes.Equal(got, wal[:spanEnd-spanStart]) {
		t.Error("the stream's WAL differs from the stored WAL")
	}
	if _, _, err := r.Sender(spanEnd + 8); err == nil || !strings.Contains(err.Error(), "ahead of the WAL flush position") {
		t.Errorf("Sender after the end: %v, want an error saying it is ahead of the flush position", err)
	}

	// A cut below what one stream sent, above what another did.
	behind, _, err := r.Sender(spanStart)
	if err != nil {
		t.Fatal(err)
	}
	sent := recs[2].EndLSN
	readStream(t, behind, spanStart)
	cut := recs[4].EndLSN
	r.cutSendable(cut)
	if _, _, err := src.Servable(spanEnd); !errors.Is(err, pgwire.ErrWALTruncated) {
		t.Errorf("Servable after a cut at %v below the %v sent = %v, want ErrWALTruncated", cut, spanEnd, err)
	}
	if end, _, err := behind.Servable(sent); err != nil || end != cut {
		t.Errorf("Servable(%v) after a cut at %v = %v, %v; want the cut as the end", sent, cut, end, err)
	}
	r.setSendable(spanEnd)

	// WAL below the store's start is gone.
	if err := s.TrimBelow(recs[len(recs)-1].LSN); err != nil {
		t.Fatal(err)
	}
	_, _, err = r.Sender(segStart)
	var removed *WALRemovedError
	if !errors.As(err, &removed) || !strings.Contains(err.Error(), "requested WAL segment 000000010000000000000007 has already been removed") {
		t.Errorf("Sender(%v) after the store removed its segment: %v, want a WALRemovedError naming segment 7", segStart, err)
	}
	if _, err := behind.ReadWAL(make([]byte, 8), spanStart); !errors.As(err, &removed) {
		t.Errorf("ReadWAL of removed WAL in a running stream: %v, want a WALRemovedError", err)
	}

	// The store is closing: streams end, and no new one starts.
	_, changed, err := behind.Servable(sent)
	if err != nil {
		t.Fatal(err)
	}
	r.StopSending()
	select {
	case <-changed:
	default:
		t.Error("StopSending did not wake the streams")
	}
	if _, _, err := behind.Servable(sent); !errors.Is(err, ErrNotSending) {
		t.Errorf("Servable after StopSending = %v, want ErrNotSending", err)
	}
	if _, _, err := r.Sender(spanEnd); !errors.Is(err, ErrNotSending) {
		t.Errorf("Sender after StopSending = %v, want ErrNotSending", err)
	}
}
