package control

import (
	"os"
	"strings"
	"time"

	"github.com/rs/zerolog"
)

// LogEnv names the environment variable that sets the level of the
// CLI's own log (debug, info, warn; empty: none): ZENITH_LOG=debug makes
// zenith pg start print how long each of its phases took, on stderr.
const LogEnv = "ZENITH_LOG"

// cliLogger is the CLI's log, at the level $ZENITH_LOG names, or a
// disabled one. An unknown level disables it too: a variable left in an
// environment must not break a command.
func cliLogger() zerolog.Logger {
	lvl, err := zerolog.ParseLevel(strings.TrimSpace(os.Getenv(LogEnv)))
	if err != nil || lvl == zerolog.NoLevel {
		return zerolog.Nop()
	}
	st, err := os.Stderr.Stat()
	color := err == nil && st.Mode()&os.ModeCharDevice != 0
	w := zerolog.ConsoleWriter{Out: os.Stderr, NoColor: !color, PartsExclude: []string{zerolog.TimestampFieldName}}
	return zerolog.New(w).Level(lvl)
}

// phaseTimer logs, at debug level, how long each phase of one operation
// took: where a slow zenith pg start spends its time.
type phaseTimer struct {
	log         zerolog.Logger
	start, last time.Time
}

// newPhaseTimer starts timing an operation that log describes (its
// fields name the operation and its object).
func newPhaseTimer(log zerolog.Logger) *phaseTimer {
	now := time.Now()
	return &phaseTimer{log: log, start: now, last: now}
}

// done logs that phase ended now (UTC, to the millisecond, as
// PostgreSQL's log has it): its duration, since the previous phase
// ended, and the operation's so far.
func (p *phaseTimer) done(phase string) {
	now := time.Now()
	p.log.Debug().Str("phase", phase).Dur("took", now.Sub(p.last)).Dur("total", now.Sub(p.start)).
		Str("at", now.UTC().Format("15:04:05.000")).Msg("done")
	p.last = now
}
