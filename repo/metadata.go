package repo

import (
	"bytes"
	"encoding/json"
	"fmt"
	"hash/crc32"
	"time"

	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// metadataFile is the name of a timeline's metadata file.
const metadataFile = "metadata"

// metadataVersion is the format version written in metadata files.
const metadataVersion = 1

// metadata is what a timeline's metadata file holds. There is no "last
// record LSN" field: a flush always ends at a record boundary, so the last
// record on disk is at disk_consistent_lsn, and a restarted timeline
// resumes there. prev_record_lsn is the start of that record (0 when not
// known, e.g. a branch created in the middle of the ancestor's WAL).
type metadata struct {
	Version           int            `json:"version"`
	Ancestor          *id.TimelineID `json:"ancestor,omitempty"`
	AncestorLSN       pgdata.LSN     `json:"ancestor_lsn"`
	DiskConsistentLSN pgdata.LSN     `json:"disk_consistent_lsn"`
	PrevRecordLSN     pgdata.LSN     `json:"prev_record_lsn"`
	GCCutoffLSN       pgdata.LSN     `json:"gc_cutoff_lsn"`
	Layers            []string       `json:"layers"`
	FlushTimes        []flushTime    `json:"flush_times,omitempty"`
}

// flushTime records that WAL up to LSN was on disk at Time: the samples GC
// uses to turn the PITR window into an LSN.
type flushTime struct {
	Time time.Time  `json:"time"`
	LSN  pgdata.LSN `json:"lsn"`
}

// envelope is the file: the metadata as raw JSON and its CRC32C, so a torn
// or damaged file is detected rather than half-believed.
type envelope struct {
	CRC32C uint32          `json:"crc32c"`
	Body   json.RawMessage `json:"body"`
}

func encodeMetadata(m metadata) ([]byte, error) {
	m.Version = metadataVersion
	b, err := encodeEnvelope(m)
	if err != nil {
		return nil, fmt.Errorf("encode metadata: %w", err)
	}
	return b, nil
}

func decodeMetadata(b []byte, file string) (metadata, error) {
	var m metadata
	if err := decodeEnvelope(b, file, &m); err != nil {
		return m, err
	}
	if m.Version != metadataVersion {
		return m, fmt.Errorf("metadata %s: unsupported format version %d", file, m.Version)
	}
	return m, nil
}

// encodeEnvelope renders v as JSON inside an envelope with its checksum.
func encodeEnvelope(v any) ([]byte, error) {
	body, err := json.Marshal(v)
	if err != nil {
		return nil, err
	}
	b, err := json.MarshalIndent(envelope{CRC32C: crc32.Checksum(body, castagnoli), Body: body}, "", "  ")
	if err != nil {
		return nil, err
	}
	return append(b, '\n'), nil
}

// decodeEnvelope checks the envelope in b and decodes its body into v; a
// damaged one is a *CorruptionError naming file.
func decodeEnvelope(b []byte, file string, v any) error {
	var e envelope
	if err := json.Unmarshal(b, &e); err != nil {
		return &CorruptionError{File: file, Offset: -1, Err: err}
	}
	// The file is indented for people; the checksum is of the compact body.
	var body bytes.Buffer
	if err := json.Compact(&body, e.Body); err != nil {
		return &CorruptionError{File: file, Offset: -1, Err: err}
	}
	if got := crc32.Checksum(body.Bytes(), castagnoli); got != e.CRC32C {
		return &CorruptionError{File: file, Offset: -1, Err: fmt.Errorf("checksum mismatch: computed %08x, stored %08x", got, e.CRC32C)}
	}
	if err := json.Unmarshal(body.Bytes(), v); err != nil {
		return &CorruptionError{File: file, Offset: -1, Err: err}
	}
	return nil
}

var castagnoli = crc32.MakeTable(crc32.Castagnoli)
