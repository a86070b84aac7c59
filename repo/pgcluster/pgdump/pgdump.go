// Package pgdump is the dump oracle the tests share: pg_dumpall of a
// running server, the comparison of two dumps that may differ only where
// PostgreSQL itself lets a server rebuilt from WAL differ (sequences logged
// ahead), and pg_amcheck of every database.
//
// A server started from WAL (a standby, crash recovery, a basebackup of
// the page server) continues a sequence after the value nextval logged,
// up to SEQ_LOG_VALS (sequence.c) ahead of what the original server
// handed out; pg_dump prints that value. Everything else must be equal.
//
// What it must never do: change the servers it dumps or checks
// (pg_amcheck's --install-missing creates the amcheck extension, which is
// why Amcheck is separate from DumpAll and run only where that is meant).
package pgdump

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"

	"github.com/zenithdb/zenith/repo/pgcluster"
)

// SeqLogVals is how many values nextval logs ahead in the WAL
// (SEQ_LOG_VALS in sequence.c).
const SeqLogVals = 32

// restrictKey replaces the random key pg_dump 15.14+ puts in \restrict
// lines, so that two dumps of equal databases are equal.
const restrictKey = "zenith"

// Server is a running server to dump: where it listens and the programs
// to run against it.
type Server struct {
	Host string
	Port int
	// User is a superuser.
	User string
	// BinDir holds pg_dumpall and pg_amcheck.
	BinDir string
}

// ClusterServer is the Server of a pgcluster.Cluster.
func ClusterServer(c *pgcluster.Cluster) Server {
	return Server{Host: "127.0.0.1", Port: c.Port(), User: pgcluster.DefaultSuperuser, BinDir: c.BinDir()}
}

func (s Server) command(ctx context.Context, prog string, args ...string) (*exec.Cmd, error) {
	cmd := exec.CommandContext(ctx, filepath.Join(s.BinDir, prog),
		append([]string{"-h", s.Host, "-p", strconv.Itoa(s.Port), "-U", s.User}, args...)...)
	user, err := pgcluster.ServerUser()
	if err != nil {
		return nil, err
	}
	pgcluster.RunAs(cmd, user)
	return cmd, nil
}

// DumpAll returns pg_dumpall's output (roles, tablespaces, every
// database), with a fixed \restrict key, without the rows of unlogged
// tables: a server rebuilt from WAL starts with them empty, as after a
// crash (ResetUnloggedRelations).
func DumpAll(ctx context.Context, s Server) (string, error) {
	cmd, err := s.command(ctx, "pg_dumpall", "--restrict-key="+restrictKey, "--no-unlogged-table-data")
	if err != nil {
		return "", err
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("pg_dumpall on %s:%d: %w: %s", s.Host, s.Port, err, stderr.Bytes())
	}
	return string(out), nil
}

// Amcheck runs pg_amcheck on every relation of every database, indexes
// checked against their heaps (--heapallindexed); it installs the amcheck
// extension where it is missing. Any corruption it reports is an error
// carrying its output.
func Amcheck(ctx context.Context, s Server) error {
	cmd, err := s.command(ctx, "pg_amcheck", "--all", "--install-missing", "--heapallindexed")
	if err != nil {
		return err
	}
	out, err := cmd.CombinedOutput()
	if err != nil || len(out) > 0 {
		return fmt.Errorf("pg_amcheck on %s:%d: %v\n%s", s.Host, s.Port, err, out)
	}
	return nil
}

// setvalLine matches pg_dump's line restoring a sequence's value.
var setvalLine = regexp.MustCompile(`(?m)^SELECT pg_catalog\.setval\('([^']+)', (-?\d+), (true|false)\);$`)

// Comparison is what Compare found.
type Comparison struct {
	// Sequences is how many sequence values the dumps restore.
	Sequences int
	// Problems are the differences, each one line; none means equal.
	Problems []string
}

// Err returns the problems as one error, nil if there are none.
func (c Comparison) Err() error {
	if len(c.Problems) == 0 {
		return nil
	}
	return errors.New(strings.Join(c.Problems, "\n"))
}

// Compare compares got, the dump of a server rebuilt from WAL, with want,
// the original's at the same point: they must be equal except that a
// sequence may be up to SeqLogVals ahead (a descending one, behind), never
// before the original's.
func Compare(got, want string) Comparison {
	var c Comparison
	gotSeqs, wantSeqs := map[string]int64{}, map[string]int64{}
	mask := func(dump string, seqs map[string]int64) string {
		return setvalLine.ReplaceAllStringFunc(dump, func(line string) string {
			m := setvalLine.FindStringSubmatch(line)
			v, err := strconv.ParseInt(m[2], 10, 64)
			if err != nil {
				c.Problems = append(c.Problems, fmt.Sprintf("%s: %v", line, err))
			}
			seqs[m[1]+" "+m[3]] = v
			return fmt.Sprintf("SELECT pg_catalog.setval('%s', N, %s);", m[1], m[3])
		})
	}
	if g, w := mask(got, gotSeqs), mask(want, wantSeqs); g != w {
		c.Problems = append(c.Problems, "pg_dumpall differs from the original's: "+FirstDifference(g, w))
	}
	c.Sequences = len(wantSeqs)
	incr := increments(want)
	for key, w := range wantSeqs {
		g, ok := gotSeqs[key]
		if !ok {
			continue // the masked dumps differ already
		}
		name, _, _ := strings.Cut(key, " ")
		by, ok := incr[name]
		if !ok {
			by = 1
		}
		// nextval logs the value SEQ_LOG_VALS steps ahead, in the
		// sequence's direction.
		if ahead := (g - w) / by; (g-w)%by != 0 || ahead < 0 || ahead > SeqLogVals {
			c.Problems = append(c.Problems, fmt.Sprintf("sequence %s: %d, want %d or up to %d increments of %d after it", name, g, w, SeqLogVals, by))
		}
	}
	return c
}

// createSequence matches pg_dump's CREATE SEQUENCE statement, or an
// identity column's SEQUENCE NAME clause, up to its INCREMENT BY line.
var createSequence = regexp.MustCompile(`(?m)^(?:CREATE (?:UNLOGGED )?SEQUENCE |    SEQUENCE NAME )(\S+)\n(?:    .*\n)*?    INCREMENT BY (-?\d+)$`)

// increments returns the increment of every sequence a dump creates, by
// the name setval uses.
func increments(dump string) map[string]int64 {
	m := map[string]int64{}
	for _, sm := range createSequence.FindAllStringSubmatch(dump, -1) {
		if by, err := strconv.ParseInt(sm[2], 10, 64); err == nil && by != 0 {
			m[sm[1]] = by
		}
	}
	return m
}

// FirstDifference shows the first line where two dumps differ.
func FirstDifference(got, want string) string {
	line := 1
	for i := 0; i < len(got) && i < len(want); i++ {
		if got[i] != want[i] {
			return fmt.Sprintf("line %d: got %q, want %q", line, lineAt(got, i), lineAt(want, i))
		}
		if got[i] == '\n' {
			line++
		}
	}
	return fmt.Sprintf("one is a prefix of the other (%d vs %d bytes)", len(got), len(want))
}

func lineAt(s string, i int) string {
	start, end := i, i
	for start > 0 && s[start-1] != '\n' {
		start--
	}
	for end < len(s) && s[end] != '\n' {
		end++
	}
	return s[start:end]
}
