package walredo

import (
	"bufio"
	"encoding/binary"
	"fmt"
	"io"

	"github.com/zenithdb/zenith/repo/pgdata"
)

// Frame types of the protocol with the redo module (see the package doc).
const (
	msgRedo  = 'R'
	msgMask  = 'M'
	msgPage  = 'P'
	msgError = 'E'

	frameHeaderSize = 5
	redoFlagHasBase = 0x01

	readyLine = "ZENITH_WALREDO_READY 1\n"
	// serveStatement is what makes the single-user backend hand itself
	// over to the module.
	serveStatement = "SELECT zenith_walredo_serve();\n"

	// maxRequestSize is the module's limit on a frame body.
	maxRequestSize = 1 << 30
	// maxErrorSize bounds an error reply; a page reply is always BlockSize.
	maxErrorSize = 1 << 20
)

var le = binary.LittleEndian

// walRecord is a record as the module takes it: its end LSN and raw bytes.
type walRecord struct {
	lsn pgdata.LSN
	raw []byte
}

// appendRedoRequest appends an 'R' frame to b.
func appendRedoRequest(b []byte, tag BufferTag, base []byte, recs []walRecord) ([]byte, error) {
	size := 4 + 4 + 4 + 1 + 4 + 1 + len(base) + 4
	for _, r := range recs {
		size += 8 + 4 + len(r.raw)
	}
	if size > maxRequestSize {
		return nil, fmt.Errorf("redo request of %d bytes exceeds the limit of %d: split the records", size, maxRequestSize)
	}
	b = append(b, msgRedo)
	b = le.AppendUint32(b, uint32(size))
	b = le.AppendUint32(b, tag.Rel.SpcNode)
	b = le.AppendUint32(b, tag.Rel.DbNode)
	b = le.AppendUint32(b, tag.Rel.RelNode)
	b = append(b, byte(tag.Fork))
	b = le.AppendUint32(b, tag.Block)
	if base != nil {
		b = append(b, redoFlagHasBase)
		b = append(b, base...)
	} else {
		b = append(b, 0)
	}
	b = le.AppendUint32(b, uint32(len(recs)))
	for _, r := range recs {
		b = le.AppendUint64(b, uint64(r.lsn))
		b = le.AppendUint32(b, uint32(len(r.raw)))
		b = append(b, r.raw...)
	}
	return b, nil
}

// appendMaskRequest appends an 'M' frame to b.
func appendMaskRequest(b []byte, rmgr pgdata.RmgrID, blk pgdata.BlockNumber, page []byte) []byte {
	b = append(b, msgMask)
	b = le.AppendUint32(b, uint32(1+4+len(page)))
	b = append(b, byte(rmgr))
	b = le.AppendUint32(b, blk)
	return append(b, page...)
}

// readReply reads one reply frame: a page ('P') or an error message ('E').
// Anything else is a protocol error.
func readReply(r *bufio.Reader) (typ byte, body []byte, err error) {
	var h [frameHeaderSize]byte
	if _, err := io.ReadFull(r, h[:]); err != nil {
		return 0, nil, err
	}
	typ, n := h[0], le.Uint32(h[1:])
	switch {
	case typ == msgPage && n == pgdata.BlockSize:
	case typ == msgError && n <= maxErrorSize:
	default:
		return 0, nil, fmt.Errorf("protocol error: reply of type %q with %d bytes", typ, n)
	}
	body = make([]byte, n)
	if _, err := io.ReadFull(r, body); err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return 0, nil, err
	}
	return typ, body, nil
}
