package walredo

import (
	"bufio"
	"bytes"
	"testing"

	"github.com/zenithdb/zenith/repo/pgdata"
)

func TestRedoRequestFrame(t *testing.T) {
	tag := BufferTag{Rel: pgdata.RelFileNode{SpcNode: 1663, DbNode: 5, RelNode: 16384}, Fork: pgdata.ForkVM, Block: 9}
	recs := []walRecord{{lsn: 0x10, raw: []byte{1, 2, 3}}, {lsn: 0x20, raw: []byte{4}}}
	for _, base := range [][]byte{nil, bytes.Repeat([]byte{7}, pgdata.BlockSize)} {
		frame, err := appendRedoRequest(nil, tag, base, recs)
		if err != nil {
			t.Fatal(err)
		}
		if frame[0] != msgRedo || int(le.Uint32(frame[1:])) != len(frame)-frameHeaderSize {
			t.Fatalf("frame header %q %d for %d bytes", frame[0], le.Uint32(frame[1:]), len(frame))
		}
		body := frame[frameHeaderSize:]
		if got := []uint32{le.Uint32(body), le.Uint32(body[4:]), le.Uint32(body[8:])}; got[0] != 1663 || got[1] != 5 || got[2] != 16384 {
			t.Errorf("relation %v", got)
		}
		if body[12] != byte(pgdata.ForkVM) || le.Uint32(body[13:]) != 9 {
			t.Errorf("fork %d block %d", body[12], le.Uint32(body[13:]))
		}
		rest := body[18:]
		if wantFlag := byte(0); base != nil {
			wantFlag = redoFlagHasBase
			if body[17] != wantFlag || !bytes.Equal(rest[:pgdata.BlockSize], base) {
				t.Fatalf("base image flag %d or bytes wrong", body[17])
			}
			rest = rest[pgdata.BlockSize:]
		} else if body[17] != wantFlag {
			t.Fatalf("flags %d without a base image", body[17])
		}
		want := []byte{2, 0, 0, 0, 0x10, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 0, 1, 2, 3, 0x20, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 4}
		if !bytes.Equal(rest, want) {
			t.Errorf("records encoded as % x, want % x", rest, want)
		}
	}
}

func TestReadReply(t *testing.T) {
	page := append([]byte{msgPage, 0, 0x20, 0, 0}, make([]byte, pgdata.BlockSize)...)
	tests := []struct {
		name string
		in   []byte
		typ  byte
		ok   bool
	}{
		{"page", page, msgPage, true},
		{"error", []byte{msgError, 3, 0, 0, 0, 'b', 'a', 'd'}, msgError, true},
		{"short page", page[:100], 0, false},
		{"page of the wrong size", []byte{msgPage, 1, 0, 0, 0, 0}, 0, false},
		{"huge error", []byte{msgError, 0, 0, 0, 0x40}, 0, false},
		{"unknown type", []byte{'X', 0, 0, 0, 0}, 0, false},
	}
	for _, tt := range tests {
		typ, _, err := readReply(bufio.NewReader(bytes.NewReader(tt.in)))
		if (err == nil) != tt.ok || typ != tt.typ {
			t.Errorf("%s: type %q, error %v; want type %q, ok %v", tt.name, typ, err, tt.typ, tt.ok)
		}
	}
}

func FuzzReadReply(f *testing.F) {
	f.Add([]byte{msgError, 3, 0, 0, 0, 'b', 'a', 'd'})
	f.Add(append([]byte{msgPage, 0, 0x20, 0, 0}, make([]byte, pgdata.BlockSize)...))
	f.Fuzz(func(t *testing.T, in []byte) {
		typ, body, err := readReply(bufio.NewReader(bytes.NewReader(in)))
		if err == nil && (len(body) > len(in) || (typ == msgPage && len(body) != pgdata.BlockSize)) {
			t.Fatalf("type %q with a %d-byte body from %d bytes", typ, len(body), len(in))
		}
	})
}
