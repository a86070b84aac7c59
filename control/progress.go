package control

import (
	"fmt"
	"io"
	"os"
	"sync"
	"time"

	"github.com/mattn/go-isatty"
	"github.com/schollz/progressbar/v3"
)

// plainProgressEvery is how often a progress written to something other
// than a terminal (a log, a pipe, a test) prints a line.
const plainProgressEvery = 5 * time.Second

// progress counts the bytes of a long transfer (import, basebackup). On a
// terminal it draws a bar (schollz/progressbar: bytes, rate, time left
// when the total is known); elsewhere it prints a plain line every
// plainProgressEvery and one when done, so logs show a long transfer
// moving without filling up with carriage returns.
type progress struct {
	out   io.Writer
	label string
	total int64 // 0: unknown
	bar   *progressbar.ProgressBar

	mu    sync.Mutex
	n     int64
	start time.Time
	last  time.Time
}

// newProgress starts a progress of label on out; total is the number of
// bytes expected, 0 if unknown.
func newProgress(out io.Writer, label string, total int64) *progress {
	now := time.Now()
	p := &progress{out: out, label: label, total: total, start: now, last: now}
	if f, ok := out.(*os.File); ok && isatty.IsTerminal(f.Fd()) {
		max := total
		if max <= 0 {
			max = -1 // progressbar's "unknown": a spinner with the count
		}
		p.bar = progressbar.NewOptions64(max,
			progressbar.OptionSetWriter(out),
			progressbar.OptionSetDescription(label),
			progressbar.OptionShowBytes(true),
			progressbar.OptionSetWidth(30),
			progressbar.OptionThrottle(100*time.Millisecond),
			progressbar.OptionShowCount(),
			progressbar.OptionSetPredictTime(true),
			progressbar.OptionFullWidth(),
			progressbar.OptionOnCompletion(func() { fmt.Fprintln(out) }),
		)
	}
	return p
}

// Write counts b; it never fails, so it can sit in an io.MultiWriter or
// an io.TeeReader.
func (p *progress) Write(b []byte) (int, error) {
	p.Add(int64(len(b)))
	return len(b), nil
}

// Add counts n more bytes.
func (p *progress) Add(n int64) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.n += n
	if p.bar != nil {
		_ = p.bar.Add64(n)
		return
	}
	if now := time.Now(); now.Sub(p.last) >= plainProgressEvery {
		p.last = now
		fmt.Fprintf(p.out, "%s: %s\n", p.label, p.status(now))
	}
}

// Set moves the count to n of total bytes (total 0: unchanged), for a
// transfer whose own program reports how far it is.
func (p *progress) Set(n, total int64) {
	p.mu.Lock()
	if total > 0 && total != p.total {
		p.total = total
		if p.bar != nil {
			p.bar.ChangeMax64(total)
		}
	}
	d := n - p.n
	p.mu.Unlock()
	if d > 0 {
		p.Add(d)
	}
}

// Bytes is how many bytes were counted.
func (p *progress) Bytes() int64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.n
}

// status describes the count so far: bytes (of the total), rate, and the
// time left when the total is known.
func (p *progress) status(now time.Time) string {
	el := now.Sub(p.start)
	rate := float64(p.n) / max(el.Seconds(), 1e-3)
	s := formatBytes(p.n)
	if p.total > 0 {
		s += fmt.Sprintf(" of %s (%d%%)", formatBytes(p.total), p.n*100/p.total)
	}
	s += fmt.Sprintf(", %s/s", formatBytes(int64(rate)))
	if p.total > p.n && rate > 0 {
		left := time.Duration(float64(p.total-p.n) / rate * float64(time.Second))
		s += fmt.Sprintf(", %v left", left.Round(time.Second))
	}
	return s
}

// Done ends the progress: the bar is completed, or a last plain line
// says how much was moved and how long it took.
func (p *progress) Done() {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.bar != nil {
		_ = p.bar.Finish()
		return
	}
	if time.Since(p.start) >= plainProgressEvery {
		fmt.Fprintf(p.out, "%s: %s in %v, done\n", p.label, formatBytes(p.n), time.Since(p.start).Round(time.Second))
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
