package api

import (
	"encoding/binary"
	"fmt"

	"github.com/zenithdb/zenith/pgwire"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// The page stream is the binary protocol of `pagestream <tenant>
// <timeline>`: after the command the session switches to COPY BOTH and
// each CopyData from the client is one request, answered by one CopyData.
//
// Every request starts with a tag byte, then a "latest" flag byte and the
// request LSN (8 bytes, big-endian). latest=1 means "the newest version,
// at least as new as LSN": the server waits until it has ingested WAL up
// to LSN (with a timeout) and answers as of its last record. latest=0
// means "exactly as of LSN". Relations follow as spcnode, dbnode, relnode
// (4 bytes each) and a fork byte; block numbers and sizes are 4 bytes.
// Integers are big-endian.
//
//	exists   0x00 latest lsn rel fork           -> 0x64 bool(1)
//	nblocks  0x01 latest lsn rel fork           -> 0x65 u32
//	getpage  0x02 latest lsn rel fork blkno     -> 0x66 page(8192)
//	dbsize   0x03 latest lsn dbnode             -> 0x68 i64 (bytes)
//	getpages 0x04 latest lsn rel fork blkno n   -> n answers, one per block
//	                                               from blkno on, each what
//	                                               getpage of it answers
//	                                 any error  -> 0x67 sqlstate(5) message
//
// getpages asks for a run of consecutive blocks (1 to MaxGetPagesBlocks)
// at once: the server reads them in one pass over its layers instead of
// one lookup per block.
const (
	TagExistsRequest   = 0x00
	TagNblocksRequest  = 0x01
	TagGetPageRequest  = 0x02
	TagDbSizeRequest   = 0x03
	TagGetPagesRequest = 0x04

	TagExistsResponse  = 0x64
	TagNblocksResponse = 0x65
	TagGetPageResponse = 0x66
	TagErrorResponse   = 0x67
	TagDbSizeResponse  = 0x68
)

// PageRequest is one decoded page-stream request.
type PageRequest struct {
	Tag    byte
	Latest bool
	LSN    pgdata.LSN
	Rel    pgdata.RelFileNode // for dbsize only DbNode is set
	Fork   pgdata.ForkNumber
	Block  pgdata.BlockNumber // getpage and getpages (the first block)
	Blocks uint32             // getpages only: how many blocks
}

// MaxGetPagesBlocks is the most blocks one getpages request asks for:
// 8 MiB of answers.
const MaxGetPagesBlocks = 1024

const (
	reqHeader   = 1 + 1 + 8
	reqRel      = 4 + 4 + 4 + 1
	reqBlock    = 4
	reqDbNode   = 4
	errCodeSize = 5
)

// ParsePageRequest decodes a request. Malformed input (short, trailing
// bytes, unknown tag, a fork PostgreSQL does not have, a bool other than
// 0/1) is an error that says what is wrong.
func ParsePageRequest(b []byte) (PageRequest, error) {
	if len(b) < reqHeader {
		return PageRequest{}, fmt.Errorf("page request of %d bytes, shorter than its %d-byte header", len(b), reqHeader)
	}
	r := PageRequest{Tag: b[0], LSN: pgdata.LSN(binary.BigEndian.Uint64(b[2:]))}
	switch b[1] {
	case 0:
	case 1:
		r.Latest = true
	default:
		return PageRequest{}, fmt.Errorf("page request: latest flag %d, want 0 or 1", b[1])
	}
	body := b[reqHeader:]
	var want int
	switch r.Tag {
	case TagExistsRequest, TagNblocksRequest:
		want = reqRel
	case TagGetPageRequest:
		want = reqRel + reqBlock
	case TagGetPagesRequest:
		want = reqRel + reqBlock + reqBlock
	case TagDbSizeRequest:
		want = reqDbNode
	default:
		return PageRequest{}, fmt.Errorf("unknown page request tag 0x%02x", r.Tag)
	}
	if len(body) != want {
		return PageRequest{}, fmt.Errorf("page request 0x%02x: %d bytes after the header, want %d", r.Tag, len(body), want)
	}
	be := binary.BigEndian
	if r.Tag == TagDbSizeRequest {
		r.Rel.DbNode = be.Uint32(body)
		return r, nil
	}
	r.Rel = pgdata.RelFileNode{SpcNode: be.Uint32(body), DbNode: be.Uint32(body[4:]), RelNode: be.Uint32(body[8:])}
	r.Fork = pgdata.ForkNumber(body[12])
	if !r.Fork.Valid() {
		return PageRequest{}, fmt.Errorf("page request: fork %d does not exist", body[12])
	}
	if r.Tag == TagGetPageRequest || r.Tag == TagGetPagesRequest {
		r.Block = be.Uint32(body[13:])
	}
	if r.Tag == TagGetPagesRequest {
		r.Blocks = be.Uint32(body[17:])
		if r.Blocks == 0 || r.Blocks > MaxGetPagesBlocks {
			return PageRequest{}, fmt.Errorf("getpages request for %d blocks, want 1 to %d", r.Blocks, MaxGetPagesBlocks)
		}
		if uint64(r.Block)+uint64(r.Blocks) > 1<<32 {
			return PageRequest{}, fmt.Errorf("getpages request for %d blocks from block %d, past the last block number", r.Blocks, r.Block)
		}
	}
	return r, nil
}

// Encode returns the request's bytes, as a compute-side client sends them.
func (r PageRequest) Encode() []byte {
	b := make([]byte, reqHeader, reqHeader+reqRel+2*reqBlock)
	b[0] = r.Tag
	if r.Latest {
		b[1] = 1
	}
	binary.BigEndian.PutUint64(b[2:], uint64(r.LSN))
	if r.Tag == TagDbSizeRequest {
		return binary.BigEndian.AppendUint32(b, r.Rel.DbNode)
	}
	b = binary.BigEndian.AppendUint32(b, r.Rel.SpcNode)
	b = binary.BigEndian.AppendUint32(b, r.Rel.DbNode)
	b = binary.BigEndian.AppendUint32(b, r.Rel.RelNode)
	b = append(b, byte(r.Fork))
	if r.Tag == TagGetPageRequest || r.Tag == TagGetPagesRequest {
		b = binary.BigEndian.AppendUint32(b, r.Block)
	}
	if r.Tag == TagGetPagesRequest {
		b = binary.BigEndian.AppendUint32(b, r.Blocks)
	}
	return b
}

// ExistsResponse encodes the answer to an exists request.
func ExistsResponse(exists bool) []byte {
	if exists {
		return []byte{TagExistsResponse, 1}
	}
	return []byte{TagExistsResponse, 0}
}

// NblocksResponse encodes the answer to an nblocks request.
func NblocksResponse(n uint32) []byte {
	return binary.BigEndian.AppendUint32([]byte{TagNblocksResponse}, n)
}

// GetPageResponse encodes a page.
func GetPageResponse(page []byte) []byte {
	return AppendGetPageResponse(make([]byte, 0, 1+len(page)), page)
}

// AppendGetPageResponse appends the encoding of a page to dst: a stream
// answering many pages reuses one buffer.
func AppendGetPageResponse(dst, page []byte) []byte {
	return append(append(dst, TagGetPageResponse), page...)
}

// DbSizeResponse encodes the answer to a dbsize request.
func DbSizeResponse(bytes int64) []byte {
	return binary.BigEndian.AppendUint64([]byte{TagDbSizeResponse}, uint64(bytes))
}

// ErrorPageResponse encodes an error with its SQLSTATE; the stream goes on.
func ErrorPageResponse(sqlstate, msg string) []byte {
	if len(sqlstate) != errCodeSize {
		sqlstate = pgwire.CodeInternalError
	}
	return append(append([]byte{TagErrorResponse}, sqlstate...), msg...)
}

// PageResponse is a decoded page-stream response, for clients and tests.
type PageResponse struct {
	Tag      byte
	Exists   bool
	Nblocks  uint32
	Page     []byte
	DbSize   int64
	SQLState string
	Message  string
}

// ParsePageResponse decodes a response.
func ParsePageResponse(b []byte) (PageResponse, error) {
	if len(b) == 0 {
		return PageResponse{}, fmt.Errorf("empty page response")
	}
	r := PageResponse{Tag: b[0]}
	body := b[1:]
	bad := func(want int) error {
		return fmt.Errorf("page response 0x%02x: %d bytes, want %d", r.Tag, len(body), want)
	}
	switch r.Tag {
	case TagExistsResponse:
		if len(body) != 1 || body[0] > 1 {
			return r, fmt.Errorf("page response: bad exists answer % x", body)
		}
		r.Exists = body[0] == 1
	case TagNblocksResponse:
		if len(body) != 4 {
			return r, bad(4)
		}
		r.Nblocks = binary.BigEndian.Uint32(body)
	case TagGetPageResponse:
		if len(body) != pgdata.BlockSize {
			return r, bad(pgdata.BlockSize)
		}
		r.Page = body
	case TagDbSizeResponse:
		if len(body) != 8 {
			return r, bad(8)
		}
		r.DbSize = int64(binary.BigEndian.Uint64(body))
	case TagErrorResponse:
		if len(body) < errCodeSize {
			return r, bad(errCodeSize)
		}
		r.SQLState, r.Message = string(body[:errCodeSize]), string(body[errCodeSize:])
	default:
		return r, fmt.Errorf("unknown page response tag 0x%02x", r.Tag)
	}
	return r, nil
}
