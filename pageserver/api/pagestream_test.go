package api

import (
	"bytes"
	"strings"
	"testing"

	"github.com/zenithdb/zenith/repo/pgdata"
)

func TestPageRequestRoundTrip(t *testing.T) {
	rel := pgdata.RelFileNode{SpcNode: 1663, DbNode: 5, RelNode: 16384}
	for _, r := range []PageRequest{
		{Tag: TagExistsRequest, LSN: 0x16B9188, Rel: rel, Fork: pgdata.ForkVM},
		{Tag: TagNblocksRequest, Latest: true, LSN: 1, Rel: rel},
		{Tag: TagGetPageRequest, LSN: pgdata.MaxLSN, Rel: rel, Fork: pgdata.ForkInit, Block: 0xFFFFFFFE},
		{Tag: TagDbSizeRequest, Latest: true, LSN: 7, Rel: pgdata.RelFileNode{DbNode: 5}},
		{Tag: TagGetPagesRequest, LSN: 9, Rel: rel, Block: 3, Blocks: 128},
		{Tag: TagGetPagesRequest, LSN: 9, Rel: rel, Block: 0xFFFFFFFF - MaxGetPagesBlocks + 1, Blocks: MaxGetPagesBlocks},
	} {
		got, err := ParsePageRequest(r.Encode())
		if err != nil || got != r {
			t.Errorf("round trip of %+v: got %+v, %v", r, got, err)
		}
	}
}

func TestPageRequestWireLayout(t *testing.T) {
	r := PageRequest{Tag: TagGetPageRequest, Latest: true, LSN: 0x0102030405060708,
		Rel: pgdata.RelFileNode{SpcNode: 1663, DbNode: 5, RelNode: 16384}, Fork: pgdata.ForkFSM, Block: 9}
	want := []byte{2, 1, 1, 2, 3, 4, 5, 6, 7, 8, 0, 0, 0x06, 0x7f, 0, 0, 0, 5, 0, 0, 0x40, 0, 1, 0, 0, 0, 9}
	if got := r.Encode(); !bytes.Equal(got, want) {
		t.Errorf("getpage bytes:\ngot  % x\nwant % x", got, want)
	}
}

func TestPageRequestRejectsMalformed(t *testing.T) {
	good := PageRequest{Tag: TagGetPageRequest, Rel: pgdata.RelFileNode{SpcNode: 1, DbNode: 2, RelNode: 3}}.Encode()
	for _, tc := range []struct {
		name string
		in   []byte
		want string
	}{
		{"empty", nil, "shorter than"},
		{"header only", good[:10], "want 17"},
		{"trailing byte", append(append([]byte{}, good...), 0), "want 17"},
		{"unknown tag", append([]byte{9}, good[1:]...), "unknown page request tag"},
		{"bad latest", append([]byte{2, 7}, good[2:]...), "latest flag"},
		{"bad fork", func() []byte { b := append([]byte{}, good...); b[22] = 4; return b }(), "fork 4"},
		{"getpages of no block", getPages(5, 0), "0 blocks"},
		{"getpages of too many", getPages(5, MaxGetPagesBlocks+1), "1025 blocks"},
		{"getpages past the last block", getPages(0xFFFFFFFF, 2), "past the last block"},
		{"getpages without a count", getPages(5, 1)[:23], "want 21"},
	} {
		_, err := ParsePageRequest(tc.in)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.name, err, tc.want)
		}
	}
}

// getPages is a getpages request's bytes, checked or not.
func getPages(block, blocks uint32) []byte {
	return PageRequest{Tag: TagGetPagesRequest, Rel: pgdata.RelFileNode{SpcNode: 1, DbNode: 2, RelNode: 3}, Block: block, Blocks: blocks}.Encode()
}

func TestPageResponses(t *testing.T) {
	page := bytes.Repeat([]byte{0xAB}, pgdata.BlockSize)
	for _, tc := range []struct {
		in   []byte
		want PageResponse
	}{
		{ExistsResponse(true), PageResponse{Tag: TagExistsResponse, Exists: true}},
		{NblocksResponse(12345), PageResponse{Tag: TagNblocksResponse, Nblocks: 12345}},
		{DbSizeResponse(1 << 40), PageResponse{Tag: TagDbSizeResponse, DbSize: 1 << 40}},
		{ErrorPageResponse("22023", "LSN 0/5 is before the GC cut-off"), PageResponse{Tag: TagErrorResponse, SQLState: "22023", Message: "LSN 0/5 is before the GC cut-off"}},
	} {
		got, err := ParsePageResponse(tc.in)
		if err != nil || got.Tag != tc.want.Tag || got.Exists != tc.want.Exists || got.Nblocks != tc.want.Nblocks ||
			got.DbSize != tc.want.DbSize || got.SQLState != tc.want.SQLState || got.Message != tc.want.Message {
			t.Errorf("ParsePageResponse(% x): got %+v, %v; want %+v", tc.in[:min(len(tc.in), 16)], got, err, tc.want)
		}
	}
	got, err := ParsePageResponse(GetPageResponse(page))
	if err != nil || !bytes.Equal(got.Page, page) {
		t.Errorf("getpage response: %v", err)
	}
	if _, err := ParsePageResponse(GetPageResponse(page[:100])); err == nil {
		t.Errorf("a short page was accepted")
	}
}

func FuzzParsePageRequest(f *testing.F) {
	rel := pgdata.RelFileNode{SpcNode: 1663, DbNode: 5, RelNode: 16384}
	f.Add(PageRequest{Tag: TagGetPageRequest, LSN: 0x16B9188, Rel: rel, Block: 3}.Encode())
	f.Add(PageRequest{Tag: TagNblocksRequest, Latest: true, Rel: rel}.Encode())
	f.Add(PageRequest{Tag: TagDbSizeRequest, Rel: rel}.Encode())
	f.Add(PageRequest{Tag: TagGetPagesRequest, Rel: rel, Block: 7, Blocks: 128}.Encode())
	f.Add([]byte{0})
	f.Fuzz(func(t *testing.T, b []byte) {
		r, err := ParsePageRequest(b)
		if err != nil {
			return
		}
		if !bytes.Equal(r.Encode(), b) {
			t.Fatalf("accepted request % x re-encodes as % x", b, r.Encode())
		}
	})
}
