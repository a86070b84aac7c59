package safekeeper

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/vfs"
)

// ControlFileName is the name of a timeline's control file.
const ControlFileName = "safekeeper.control"

// controlMagic starts every control file; controlVersion is its format.
const (
	controlMagic   = "ZSKC"
	controlVersion = 1
	// controlHeader is magic, version and payload length; a CRC-32C of
	// everything before it follows the payload.
	controlHeader = 4 + 4 + 4
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

// TermStart is one entry of a term history: the WAL at and above Start
// (up to the next entry's Start) was written by the compute of Term.
type TermStart struct {
	Term  uint64     `json:"term"`
	Start pgdata.LSN `json:"start"`
}

// History is a term history, oldest term first.
type History []TermStart

// LastTerm is the term of the last entry, 0 for an empty history.
func (h History) LastTerm() uint64 {
	if len(h) == 0 {
		return 0
	}
	return h[len(h)-1].Term
}

// String writes h as "term@lsn,term@lsn".
func (h History) String() string {
	parts := make([]string, len(h))
	for i, e := range h {
		parts[i] = fmt.Sprintf("%d@%s", e.Term, e.Start)
	}
	return strings.Join(parts, ",")
}

// ParseHistory parses what History.String writes; terms and start LSNs
// must both increase.
func ParseHistory(s string) (History, error) {
	if s == "" || s == "-" {
		return nil, nil
	}
	var h History
	for _, p := range strings.Split(s, ",") {
		t, l, ok := strings.Cut(p, "@")
		if !ok {
			return nil, fmt.Errorf("term history entry %q: want term@lsn", p)
		}
		term, err := strconv.ParseUint(t, 10, 64)
		if err != nil || term == 0 {
			return nil, fmt.Errorf("term history entry %q: invalid term", p)
		}
		lsn, err := pgdata.ParseLSN(l)
		if err != nil {
			return nil, fmt.Errorf("term history entry %q: %w", p, err)
		}
		if n := len(h); n > 0 && (term <= h[n-1].Term || lsn < h[n-1].Start) {
			return nil, fmt.Errorf("term history %q: terms and start LSNs must increase", s)
		}
		h = append(h, TermStart{Term: term, Start: lsn})
	}
	return h, nil
}

// Control is the durable state of one timeline on one safekeeper.
type Control struct {
	// SystemID is the PostgreSQL system identifier of the WAL (0 until a
	// compute has been seen).
	SystemID uint64 `json:"system_id"`
	// SegmentSize is the WAL segment size.
	SegmentSize uint64 `json:"segment_size"`
	// Term is the highest term this safekeeper voted for.
	Term uint64 `json:"term"`
	// History is the term history of the WAL held here.
	History History `json:"history"`
	// BeginLSN is the first LSN the timeline's WAL starts at (0: none yet).
	BeginLSN pgdata.LSN `json:"begin_lsn"`
	// FlushLSN is a lower bound of the fsynced end of WAL.
	FlushLSN pgdata.LSN `json:"flush_lsn"`
	// CommitLSN is the quorum-durable LSN known here.
	CommitLSN pgdata.LSN `json:"commit_lsn"`
	// PageserverLSN is the page server's reported consistent LSN.
	PageserverLSN pgdata.LSN `json:"pageserver_lsn"`
	// PageserverGeneration is the highest attach generation of a page
	// server that reported PageserverLSN (0: none had one). It is kept
	// here so that after a restart a stale page server's report still
	// cannot move PageserverLSN (see Timeline.SetPageserverLSN).
	PageserverGeneration uint32 `json:"pageserver_generation"`
	// ComputeTerm and Compute are the term and connection string of the
	// compute this safekeeper streams from.
	ComputeTerm uint64 `json:"compute_term"`
	Compute     string `json:"compute"`
}

// CorruptionError says a safekeeper file (a control file, a WAL segment)
// is torn or corrupt; it is vfs.CorruptionError.
type CorruptionError = vfs.CorruptionError

// encodeControl returns the bytes of a control file holding c.
func encodeControl(c *Control) ([]byte, error) {
	payload, err := json.Marshal(c)
	if err != nil {
		return nil, fmt.Errorf("encode control file: %w", err)
	}
	b := make([]byte, 0, controlHeader+len(payload)+4)
	b = append(b, controlMagic...)
	b = binary.LittleEndian.AppendUint32(b, controlVersion)
	b = binary.LittleEndian.AppendUint32(b, uint32(len(payload)))
	b = append(b, payload...)
	return binary.LittleEndian.AppendUint32(b, crc32.Checksum(b, castagnoli)), nil
}

// decodeControl parses a control file's bytes.
func decodeControl(b []byte) (*Control, error) {
	if len(b) < controlHeader+4 {
		return nil, fmt.Errorf("%d bytes, shorter than the smallest control file", len(b))
	}
	if string(b[:4]) != controlMagic {
		return nil, fmt.Errorf("bad magic %q", b[:4])
	}
	if v := binary.LittleEndian.Uint32(b[4:]); v != controlVersion {
		return nil, fmt.Errorf("format version %d, want %d", v, controlVersion)
	}
	n := binary.LittleEndian.Uint32(b[8:])
	if uint64(n)+controlHeader+4 != uint64(len(b)) {
		return nil, fmt.Errorf("payload length %d does not match the file size %d", n, len(b))
	}
	body := b[:len(b)-4]
	if got, want := crc32.Checksum(body, castagnoli), binary.LittleEndian.Uint32(b[len(b)-4:]); got != want {
		return nil, fmt.Errorf("CRC mismatch: computed %08x, stored %08x", got, want)
	}
	dec := json.NewDecoder(bytes.NewReader(body[controlHeader:]))
	dec.DisallowUnknownFields()
	var c Control
	if err := dec.Decode(&c); err != nil {
		return nil, fmt.Errorf("decode: %w", err)
	}
	return &c, nil
}

// readControl reads the control file in dir; os.ErrNotExist (wrapped) if
// there is none, a *CorruptionError if it is torn or corrupt.
func readControl(dir string) (*Control, error) {
	path := filepath.Join(dir, ControlFileName)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read control file: %w", err)
	}
	c, err := decodeControl(b)
	if err != nil {
		return nil, &CorruptionError{File: path, Offset: -1, Err: err}
	}
	return c, nil
}

// writeControl replaces the control file in dir with c, durably: a temp
// file, fsync, rename over the old one, fsync of the directory.
func writeControl(dir string, c *Control) error {
	b, err := encodeControl(c)
	if err != nil {
		return err
	}
	if _, err := vfs.WriteFileAtomic(vfs.Default, filepath.Join(dir, ControlFileName), b, 0o600); err != nil {
		return fmt.Errorf("write control file: %w", err)
	}
	return nil
}
