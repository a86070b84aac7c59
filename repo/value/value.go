package value

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/zenithdb/zenith/repo/pgdata"
)

// Kind says what a value holds.
type Kind uint8

// The kinds of values.
const (
	// KindImage is a whole page or file.
	KindImage Kind = 1
	// KindWALRecord is a raw PostgreSQL WAL record.
	KindWALRecord Kind = 2
	// KindOp is an operation applied in Go (Op).
	KindOp Kind = 3
)

func (k Kind) String() string {
	switch k {
	case KindImage:
		return "image"
	case KindWALRecord:
		return "wal-record"
	case KindOp:
		return "op"
	}
	return fmt.Sprintf("kind%d", uint8(k))
}

const (
	kindMask     = 0x0F
	flagWillInit = 0x80
)

// ErrMalformed is wrapped by every decoding error of this package.
var ErrMalformed = errors.New("malformed value")

// Value is what the repository stores for a key at an LSN.
type Value struct {
	Kind Kind
	// WillInit is set on a record or operation that rebuilds the page from
	// nothing, so reconstruction needs nothing older. An image always
	// stands alone; the flag is not used for images.
	WillInit bool
	// Data is the image, the raw WAL record, or the encoded operation.
	Data []byte
}

// Image returns an image value.
func Image(page []byte) Value { return Value{Kind: KindImage, Data: page} }

// WALRecord returns a WAL record value.
func WALRecord(raw []byte, willInit bool) Value {
	return Value{Kind: KindWALRecord, WillInit: willInit, Data: raw}
}

// Initializes reports whether v needs no earlier version of the page: it is
// an image, or a record or operation with will_init.
func (v Value) Initializes() bool { return v.Kind == KindImage || v.WillInit }

// Encode returns v's encoding.
func (v Value) Encode() []byte { return v.AppendEncoded(make([]byte, 0, 1+len(v.Data))) }

// AppendEncoded appends v's encoding to b.
func (v Value) AppendEncoded(b []byte) []byte {
	h := byte(v.Kind)
	if v.WillInit && v.Kind != KindImage {
		h |= flagWillInit
	}
	return append(append(b, h), v.Data...)
}

// Decode decodes a value encoded by Encode. The result's Data aliases b.
func Decode(b []byte) (Value, error) {
	if len(b) == 0 {
		return Value{}, fmt.Errorf("%w: empty", ErrMalformed)
	}
	h := b[0]
	if h&^(kindMask|flagWillInit) != 0 {
		return Value{}, fmt.Errorf("%w: header byte %#02x has unknown flags", ErrMalformed, h)
	}
	v := Value{Kind: Kind(h & kindMask), WillInit: h&flagWillInit != 0, Data: b[1:]}
	if err := v.Validate(); err != nil {
		return Value{}, err
	}
	return v, nil
}

// Validate reports whether v can be stored: a known kind, no will_init on
// an image, and a well-formed operation.
func (v Value) Validate() error {
	switch v.Kind {
	case KindImage:
		if v.WillInit {
			return fmt.Errorf("%w: image with will_init flag", ErrMalformed)
		}
	case KindWALRecord:
	case KindOp:
		if _, err := DecodeOp(v.Data); err != nil {
			return err
		}
	default:
		return fmt.Errorf("%w: unknown kind %d", ErrMalformed, v.Kind)
	}
	return nil
}

// String describes v briefly, for logs and test failures.
func (v Value) String() string {
	s := fmt.Sprintf("%s(%d bytes)", v.Kind, len(v.Data))
	if v.WillInit {
		s += "+will_init"
	}
	return s
}

// Record is a value together with the LSN it was stored at: what WAL redo
// replays on top of a base image.
type Record struct {
	LSN   pgdata.LSN
	Value Value
}

// sizeLen is the length of a size value.
const sizeLen = 4

// Size returns the value that stores a size: the number of blocks of a
// relation fork or of pages of an SLRU segment, as a 4-byte big-endian
// image. Everything that writes or reads a size key goes through Size and
// DecodeSize.
func Size(n uint32) Value { return Image(binary.BigEndian.AppendUint32(nil, n)) }

// DecodeSize decodes a size stored by Size.
func DecodeSize(b []byte) (uint32, error) {
	if len(b) != sizeLen {
		return 0, fmt.Errorf("size value of %d bytes, want %d", len(b), sizeLen)
	}
	return binary.BigEndian.Uint32(b), nil
}
