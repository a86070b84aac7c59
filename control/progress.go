package control

import (
	"fmt"
	"io"
	"os"
	"time"

	"github.com/mattn/go-isatty"
)

// progress counts the bytes of a long transfer (import, basebackup) and,
// when its output is a terminal, keeps one line up to date with the count.
// Elsewhere (logs, pipes, tests) it prints nothing.
type progress struct {
	out   io.Writer
	label string
	tty   bool
	n     int64
	last  time.Time
}

func newProgress(out io.Writer, label string) *progress {
	f, ok := out.(*os.File)
	return &progress{out: out, label: label, tty: ok && isatty.IsTerminal(f.Fd())}
}

// Write counts p; it never fails, so it can sit in an io.MultiWriter.
func (p *progress) Write(b []byte) (int, error) {
	p.n += int64(len(b))
	if p.tty && time.Since(p.last) > 200*time.Millisecond {
		p.last = time.Now()
		fmt.Fprintf(p.out, "\r%s: %s", p.label, formatBytes(p.n))
	}
	return len(b), nil
}

// Done ends the progress line.
func (p *progress) Done() {
	if p.tty {
		fmt.Fprintf(p.out, "\r%s: %s, done\n", p.label, formatBytes(p.n))
	}
}

// formatBytes prints n in the largest binary unit that keeps it >= 1.
func formatBytes(n int64) string {
	const unit = 1024
	if n < unit {
		return fmt.Sprintf("%d B", n)
	}
	div, exp := int64(unit), 0
	for m := n / unit; m >= unit; m /= unit {
		div *= unit
		exp++
	}
	return fmt.Sprintf("%.1f %ciB", float64(n)/float64(div), "KMGTPE"[exp])
}
