package pgdata

import "testing"

func TestReplOriginCheckpointRoundTripAndRejects(t *testing.T) {
	o := ReplOrigins{}
	o.Advance(2, 0x200, false)
	o.Advance(2, 0x100, false) // not backwards unless forced
	o.Advance(1, 0x300, false)
	o.Advance(1, 0x50, true)
	o.Advance(InvalidReplOrigin, 0x1, false)
	o.Advance(DoNotReplicateOrigin, 0x1, false)
	b := o.Encode()
	got, err := ParseReplOriginCheckpoint(b)
	if err != nil || len(got) != 2 || got[1] != 0x50 || got[2] != 0x200 {
		t.Fatalf("round trip: %v, %v; want map[1:0/50 2:0/200]", got, err)
	}
	for name, bad := range map[string][]byte{
		"short":     b[:6],
		"torn":      b[:len(b)-3],
		"magic":     append([]byte{0}, b[1:]...),
		"crc":       append(append([]byte(nil), b[:len(b)-1]...), b[len(b)-1]^1),
		"lsn flips": append(append(append([]byte(nil), b[:12]...), b[12]^1), b[13:]...),
	} {
		if _, err := ParseReplOriginCheckpoint(bad); err == nil {
			t.Errorf("%s: parsed without error", name)
		}
	}
}
