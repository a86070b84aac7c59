package pgwaldump

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"

	"github.com/zenithdb/zenith/repo/pgcluster"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// Options say which WAL pg_waldump reads.
type Options struct {
	// BinDir holds pg_waldump; empty means pgcluster.FindBinDir's search.
	BinDir string
	// WALDir is the directory of the segment files (a cluster's pg_wal).
	WALDir string
	// Start is where reading starts (-s). If it is not a record boundary
	// pg_waldump skips to the next record and Result.FirstRecord says so.
	Start pgdata.LSN
	// End, if not zero, stops reading (-e): only records that end at or
	// before it are printed. Zero reads to the end of valid WAL.
	End pgdata.LSN
	// Timeline to read (-t); zero means 1.
	Timeline uint32
}

// Result is what one pg_waldump run printed.
type Result struct {
	Records []Record
	// FirstRecord is the first record's LSN when pg_waldump had to skip
	// from Options.Start to reach it; zero otherwise.
	FirstRecord pgdata.LSN
	// EndOfWAL is pg_waldump's reason for stopping when it ran into the
	// end of valid WAL (e.g. "invalid record length at 0/3000148: wanted
	// 24, got 0"), empty when it stopped at Options.End.
	EndOfWAL string
}

// endOfWALRE matches how pg_waldump reports a record it cannot read: the
// way every read of WAL ends when no End is given, since WAL has no end
// marker and PostgreSQL itself takes the first invalid record as the end.
var endOfWALRE = regexp.MustCompile(`pg_waldump: error: error in WAL record at [0-9A-F]+/[0-9A-F]+: (.*)`)

// Run runs pg_waldump -b over opts' WAL range and parses its output. A
// stop at the end of valid WAL is not an error (Result.EndOfWAL says why);
// any other failure of pg_waldump is, with what it printed on stderr.
func Run(ctx context.Context, opts Options) (*Result, error) {
	if opts.BinDir == "" {
		dir, err := pgcluster.FindBinDir(ctx, "")
		if err != nil {
			return nil, err
		}
		opts.BinDir = dir
	}
	tli := opts.Timeline
	if tli == 0 {
		tli = 1
	}
	args := []string{"-b", "-p", opts.WALDir, "-t", fmt.Sprint(tli), "-s", opts.Start.String()}
	if opts.End != 0 {
		args = append(args, "-e", opts.End.String())
	}
	cmd := exec.CommandContext(ctx, filepath.Join(opts.BinDir, "pg_waldump"), args...)
	cmd.Env = append(cmd.Environ(), "LC_ALL=C") // messages parsed below are English
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, fmt.Errorf("pg_waldump: %w", err)
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start pg_waldump: %w", err)
	}
	p := NewParser(stdout)
	res := &Result{}
	var parseErr error
	for {
		rec, err := p.Next()
		if err != nil {
			if !errors.Is(err, io.EOF) {
				parseErr = err
			}
			break
		}
		res.Records = append(res.Records, rec)
	}
	if parseErr != nil {
		_ = cmd.Process.Kill()
	}
	waitErr := cmd.Wait()
	res.FirstRecord = p.FirstRecord
	cmdline := "pg_waldump " + strings.Join(args, " ")
	if parseErr != nil {
		return nil, fmt.Errorf("%s: %w", cmdline, parseErr)
	}
	if waitErr != nil {
		m := endOfWALRE.FindStringSubmatch(stderr.String())
		if m == nil || opts.End != 0 {
			return nil, fmt.Errorf("%s: %w: %s", cmdline, waitErr, strings.TrimSpace(stderr.String()))
		}
		res.EndOfWAL = strings.TrimSpace(m[1])
	}
	return res, nil
}
