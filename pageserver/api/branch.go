package api

import (
	"fmt"
	"slices"
	"strconv"

	"github.com/zenithdb/zenith/repo/id"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// BranchInfo describes a branch as the page service's branch_list and
// branch_create answer (one row each, BranchColumns) and as the HTTP API
// shows it (JSON). Optional values (no ancestor, an unknown previous
// record) are empty.
type BranchInfo struct {
	Name              string        `json:"name"`
	Timeline          id.TimelineID `json:"timeline_id"`
	AncestorName      string        `json:"ancestor_name"`
	AncestorTimeline  string        `json:"ancestor_timeline_id"`
	AncestorLSN       OptionalLSN   `json:"ancestor_lsn"`
	LastRecordLSN     pgdata.LSN    `json:"last_record_lsn"`
	PrevRecordLSN     OptionalLSN   `json:"prev_record_lsn"`
	DiskConsistentLSN pgdata.LSN    `json:"disk_consistent_lsn"`
	// RemoteConsistentLSN is the LSN up to which the branch is in remote
	// storage (0: nothing uploaded yet, or no remote storage).
	RemoteConsistentLSN pgdata.LSN `json:"remote_consistent_lsn"`
	// GCCutoffLSN is the lowest LSN the branch can be read, or branched
	// from, at: history below it is gone.
	GCCutoffLSN pgdata.LSN `json:"gc_cutoff_lsn"`
	// LogicalSize is the size of the branch's databases as of its last
	// record, what pg_database_size sums to (-1 when it could not be
	// computed).
	LogicalSize int64 `json:"logical_size"`
	// LayerBytes and WALBytes are the bytes on the page server that only
	// this branch holds (its own layer files, its own raw WAL): what
	// deleting it frees.
	LayerBytes int64 `json:"layer_bytes"`
	WALBytes   int64 `json:"wal_bytes"`
	// AcknowledgedLSN is at or after the end of every record the page
	// server may have acknowledged to a compute streaming WAL to it
	// directly (0: it takes no WAL for the branch). A compute that
	// continues the branch starts there or later; a basebackup there
	// waits for ingest to reach it. With safekeepers, they are the ones
	// that acknowledge (safekeeper.AcknowledgedEnd).
	AcknowledgedLSN pgdata.LSN `json:"acknowledged_lsn"`
	// IngestStopped is "ingest of timeline T stopped at LSN X: reason"
	// when the timeline's ingest stopped, "" while it goes on.
	IngestStopped string `json:"ingest_stopped,omitempty"`
}

// BranchColumns are the columns of branch_list and of the commands that
// create a branch, in the order of BranchInfo.Row.
var BranchColumns = []string{"name", "timeline_id", "ancestor_name", "ancestor_timeline_id",
	"ancestor_lsn", "last_record_lsn", "prev_record_lsn", "disk_consistent_lsn", "remote_consistent_lsn", "ingest_stopped",
	"gc_cutoff_lsn", "logical_size", "layer_bytes", "wal_bytes", "acknowledged_lsn"}

// Row is the branch as a row of BranchColumns.
func (b BranchInfo) Row() []string {
	return []string{b.Name, b.Timeline.String(), b.AncestorName, b.AncestorTimeline, b.AncestorLSN.String(),
		b.LastRecordLSN.String(), b.PrevRecordLSN.String(), b.DiskConsistentLSN.String(), b.RemoteConsistentLSN.String(), b.IngestStopped,
		b.GCCutoffLSN.String(), strconv.FormatInt(b.LogicalSize, 10), strconv.FormatInt(b.LayerBytes, 10), strconv.FormatInt(b.WALBytes, 10),
		b.AcknowledgedLSN.String()}
}

// branchSizeColumns are the columns of BranchColumns that need the
// branch's sizes computed.
var branchSizeColumns = []string{"logical_size", "layer_bytes", "wal_bytes"}

// BranchStateColumns are BranchColumns without the sizes: the columns
// of branch_list for one branch (BranchInfo.StateRow).
var BranchStateColumns = withoutSizes(BranchColumns)

// StateRow is the branch as a row of BranchStateColumns.
func (b BranchInfo) StateRow() []string { return withoutSizes(b.Row()) }

// withoutSizes is row, a row of BranchColumns, without the sizes' columns.
func withoutSizes(row []string) []string {
	out := make([]string, 0, len(row))
	for i, v := range row {
		if !slices.Contains(branchSizeColumns, BranchColumns[i]) {
			out = append(out, v)
		}
	}
	return out
}

// PhysicalSize is the bytes only this branch holds: its layers and WAL.
func (b BranchInfo) PhysicalSize() int64 { return b.LayerBytes + b.WALBytes }

// ParseBranchRow reads a row of BranchColumns, by column name, back into a
// BranchInfo.
func ParseBranchRow(r map[string]string) (BranchInfo, error) {
	b := BranchInfo{Name: r["name"], AncestorName: r["ancestor_name"], AncestorTimeline: r["ancestor_timeline_id"],
		IngestStopped: r["ingest_stopped"]}
	var err error
	if b.Timeline, err = id.ParseTimelineID(r["timeline_id"]); err != nil {
		return b, fmt.Errorf("branch %q: %w", b.Name, err)
	}
	for _, f := range []struct {
		col string
		lsn *OptionalLSN
	}{{"ancestor_lsn", &b.AncestorLSN}, {"prev_record_lsn", &b.PrevRecordLSN}} {
		if err := f.lsn.UnmarshalText([]byte(r[f.col])); err != nil {
			return b, fmt.Errorf("branch %q: %s: %w", b.Name, f.col, err)
		}
	}
	for _, f := range []struct {
		col string
		lsn *pgdata.LSN
	}{{"last_record_lsn", &b.LastRecordLSN}, {"disk_consistent_lsn", &b.DiskConsistentLSN}, {"gc_cutoff_lsn", &b.GCCutoffLSN}, {"remote_consistent_lsn", &b.RemoteConsistentLSN}, {"acknowledged_lsn", &b.AcknowledgedLSN}} {
		v, ok := r[f.col]
		if !ok && f.col != "last_record_lsn" && f.col != "disk_consistent_lsn" {
			continue // a page server from before retention settings, remote storage or acknowledged_lsn
		}
		if *f.lsn, err = pgdata.ParseLSN(v); err != nil {
			return b, fmt.Errorf("branch %q: %s: %w", b.Name, f.col, err)
		}
	}
	for _, f := range []struct {
		col string
		n   *int64
	}{{"logical_size", &b.LogicalSize}, {"layer_bytes", &b.LayerBytes}, {"wal_bytes", &b.WALBytes}} {
		v, ok := r[f.col]
		if !ok {
			continue // a page server from before sizes
		}
		if *f.n, err = strconv.ParseInt(v, 10, 64); err != nil {
			return b, fmt.Errorf("branch %q: %s: %w", b.Name, f.col, err)
		}
	}
	return b, nil
}

// OptionalLSN is an LSN that is printed empty when it is 0 (none, or not
// known).
type OptionalLSN pgdata.LSN

func (l OptionalLSN) String() string {
	if l == 0 {
		return ""
	}
	return pgdata.LSN(l).String()
}

// MarshalText implements encoding.TextMarshaler.
func (l OptionalLSN) MarshalText() ([]byte, error) { return []byte(l.String()), nil }

// UnmarshalText implements encoding.TextUnmarshaler.
func (l *OptionalLSN) UnmarshalText(b []byte) error {
	if len(b) == 0 {
		*l = 0
		return nil
	}
	v, err := pgdata.ParseLSN(string(b))
	*l = OptionalLSN(v)
	return err
}
