package pgwire

import (
	"bytes"
	"reflect"
	"testing"
	"time"

	"github.com/zenithdb/zenith/repo/pgdata"
)

func TestReplicationMessagesRoundTrip(t *testing.T) {
	x := &XLogData{Start: 0x1_0000_2000, WALEnd: 0x1_0000_3000, SendTime: 12345, Data: []byte("wal bytes")}
	got, err := ParseReplicationMessage(x.Encode())
	if err != nil || !reflect.DeepEqual(got, x) {
		t.Errorf("XLogData: got %+v, %v; want %+v", got, err, x)
	}
	k := &Keepalive{WALEnd: 0x16B9188, SendTime: -5, ReplyRequested: true}
	got, err = ParseReplicationMessage(k.Encode())
	if err != nil || !reflect.DeepEqual(got, k) {
		t.Errorf("Keepalive: got %+v, %v; want %+v", got, err, k)
	}
	st := &StandbyStatus{Written: 3, Flushed: 2, Applied: 1, ClientTime: 99, ReplyRequested: true}
	gotSt, err := ParseStandbyMessage(st.Encode())
	if err != nil || !reflect.DeepEqual(gotSt, st) {
		t.Errorf("StandbyStatus: got %+v, %v; want %+v", gotSt, err, st)
	}
}

// TestReplicationMessageBytes pins the wire layout to the protocol
// documentation: type byte, then big-endian 64-bit fields.
func TestReplicationMessageBytes(t *testing.T) {
	k := (&Keepalive{WALEnd: pgdata.LSN(0x0102030405060708), SendTime: 0x1112131415161718, ReplyRequested: true}).Encode()
	want := []byte{'k', 1, 2, 3, 4, 5, 6, 7, 8, 0x11, 0x12, 0x13, 0x14, 0x15, 0x16, 0x17, 0x18, 1}
	if !bytes.Equal(k, want) {
		t.Errorf("keepalive bytes: got % x, want % x", k, want)
	}
}

func TestReplicationMessagesRejectMalformed(t *testing.T) {
	for _, b := range [][]byte{nil, {'w'}, {'w', 1, 2}, {'k', 0}, {'x', 0, 0}, make([]byte, 30)} {
		if _, err := ParseReplicationMessage(b); err == nil {
			t.Errorf("ParseReplicationMessage(% x) succeeded, want an error", b)
		}
	}
	for _, b := range [][]byte{nil, {'r', 1}, {'q'}} {
		if _, err := ParseStandbyMessage(b); err == nil {
			t.Errorf("ParseStandbyMessage(% x) succeeded, want an error", b)
		}
	}
}

func TestPGTime(t *testing.T) {
	ts := time.Date(2026, 11, 21, 6, 0, 0, 123000, time.UTC)
	if got := PGTime(ToPGTime(ts)); !got.Equal(ts) {
		t.Errorf("round trip: got %v, want %v", got, ts)
	}
	if got := ToPGTime(time.Date(2000, 1, 1, 0, 0, 1, 0, time.UTC)); got != 1_000_000 {
		t.Errorf("one second after the PostgreSQL epoch: got %d µs, want 1000000", got)
	}
}

func FuzzParseReplicationMessage(f *testing.F) {
	f.Add((&XLogData{Start: 1, WALEnd: 2, Data: []byte("x")}).Encode())
	f.Add((&Keepalive{WALEnd: 1}).Encode())
	f.Add((&StandbyStatus{Flushed: 5}).Encode())
	f.Fuzz(func(t *testing.T, b []byte) {
		if m, err := ParseReplicationMessage(b); err == nil {
			if x, ok := m.(*XLogData); ok && !bytes.Equal(x.Encode(), b) {
				t.Fatalf("XLogData does not re-encode to its input")
			}
			if k, ok := m.(*Keepalive); ok && !bytes.Equal(k.Encode()[:17], b[:17]) {
				t.Fatalf("keepalive does not re-encode to its input")
			}
		}
		_, _ = ParseStandbyMessage(b)
	})
}

// FuzzParseStartReplication: never a panic on a client's command, and
// what parses names timeline 1 or none.
func FuzzParseStartReplication(f *testing.F) {
	for _, s := range []string{"SLOT pageserver PHYSICAL 0/16B9188 TIMELINE 1", "0/0", "PHYSICAL 0/1 TIMELINE 2", "SLOT", "LOGICAL x 0/0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		sr, err := ParseStartReplication(s, 1)
		if err == nil && sr.Timeline != 0 && sr.Timeline != 1 {
			t.Fatalf("ParseStartReplication(%q) = %+v, a timeline other than 1", s, sr)
		}
	})
}
