package control

import (
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"

	"github.com/zenithdb/zenith/pageserver/walingest"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// ErrUnsupportedRecords is returned by `zenith waldump --stats` when the
// WAL holds records the page server's ingest refuses.
var ErrUnsupportedRecords = errors.New("the WAL holds records the page server does not support")

// typeKey is a record type as counted: a PostgreSQL 15 type, or for an
// info value PostgreSQL 15 does not define, the rmgr and that value.
type typeKey struct {
	rmgr pgdata.RmgrID
	info uint8
}

// typeCount is one line of the summary.
type typeCount struct {
	Rmgr     string `json:"rmgr"`
	Type     string `json:"type"`
	Info     uint8  `json:"info"`
	Count    int    `json:"count"`
	Handling string `json:"handling"`
	How      string `json:"how"`
}

// walStats is the summary `zenith waldump --stats` prints.
type walStats struct {
	Records     int         `json:"records"`
	Start       pgdata.LSN  `json:"start"`
	End         pgdata.LSN  `json:"end"`
	Types       []typeCount `json:"types"`
	Ingested    int         `json:"ingested"`
	Ignored     int         `json:"ignored"`
	Unsupported int         `json:"unsupported"`
}

// countRecords reads every record of r and counts them by type, with the
// page server's classification of each type (walingest.ClassifyRecord).
// It returns the error that stopped it, an *EndOfWALError at the end of
// valid WAL.
func countRecords(r *pgdata.WALFileReader) (*walStats, error) {
	counts := map[typeKey]int{}
	s := &walStats{}
	var err error
	for {
		var rec *pgdata.Record
		if rec, err = r.Next(); err != nil {
			break
		}
		if s.Records == 0 {
			s.Start = rec.LSN
		}
		s.Records++
		s.End = rec.EndLSN
		k := typeKey{rec.Rmgr(), rec.Header.Info &^ pgdata.XLRInfoMask}
		if t, ok := pgdata.TypeOf(rec.Rmgr(), rec.Header.Info); ok {
			k.info = t.Info
		}
		counts[k]++
	}
	for k, n := range counts {
		h := walingest.ClassifyRecord(k.rmgr, k.info)
		s.Types = append(s.Types, typeCount{
			Rmgr: k.rmgr.String(), Type: pgdata.RecordTypeName(k.rmgr, k.info), Info: k.info,
			Count: n, Handling: h.Handling.String(), How: h.How,
		})
		switch h.Handling {
		case walingest.Ingested:
			s.Ingested += n
		case walingest.Ignored:
			s.Ignored += n
		default:
			s.Unsupported += n
		}
	}
	sort.Slice(s.Types, func(i, j int) bool {
		a, b := s.Types[i], s.Types[j]
		if a.Count != b.Count {
			return a.Count > b.Count
		}
		if a.Rmgr != b.Rmgr {
			return a.Rmgr < b.Rmgr
		}
		return a.Info < b.Info
	})
	return s, err
}

// writeStats prints s as an aligned table: one line per record type, most
// frequent first, with its handling, the reason for an unsupported one,
// and the totals.
func writeStats(w io.Writer, s *walStats) error {
	width := len("TYPE")
	for _, t := range s.Types {
		width = max(width, len(t.Rmgr)+1+len(t.Type))
	}
	var b strings.Builder
	fmt.Fprintf(&b, "%-*s  %10s  %s\n", width, "TYPE", "COUNT", "HANDLING")
	for _, t := range s.Types {
		handling := t.Handling
		if handling == walingest.Unsupported.String() {
			handling = "UNSUPPORTED: " + t.How
		}
		fmt.Fprintf(&b, "%-*s  %10d  %s\n", width, t.Rmgr+"/"+t.Type, t.Count, handling)
	}
	fmt.Fprintf(&b, "%d records of %d types from %v to %v: %d ingested, %d ignored, %d unsupported\n",
		s.Records, len(s.Types), s.Start, s.End, s.Ingested, s.Ignored, s.Unsupported)
	_, err := io.WriteString(w, b.String())
	return err
}

// unsupportedError names the unsupported types of s, or is nil.
func unsupportedError(s *walStats) error {
	if s.Unsupported == 0 {
		return nil
	}
	var names []string
	for _, t := range s.Types {
		if t.Handling == walingest.Unsupported.String() {
			names = append(names, t.Rmgr+"/"+t.Type+" ("+strconv.Itoa(t.Count)+")")
		}
	}
	return fmt.Errorf("%w: %d records: %s", ErrUnsupportedRecords, s.Unsupported, strings.Join(names, ", "))
}
