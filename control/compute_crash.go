package control

import (
	"bytes"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
)

// crashLogTail is how much of the end of a node's server log crashReason
// reads.
const crashLogTail = 64 << 10

// lowDiskSpace is the free space under which a crashed node's directory
// counts as full: less than one WAL segment, which PostgreSQL must be
// able to create to go on writing WAL.
const lowDiskSpace = 16 << 20

// crashReason says why a crashed node stopped, as far as zenith can
// tell: the last PANIC of its server log, and whether the file system of
// its directory is full (PostgreSQL PANICs when it cannot write its WAL,
// and may not even get its last words into a log on that file system).
// It is empty when neither says anything.
func (n *Node) crashReason() string {
	var parts []string
	if p := lastPanic(n.LogFile()); p != "" {
		parts = append(parts, p)
	}
	var st syscall.Statfs_t
	if err := syscall.Statfs(n.dir, &st); err == nil {
		if free := int64(st.Bavail) * st.Bsize; free < lowDiskSpace {
			parts = append(parts, fmt.Sprintf("the file system of %s is full (%s free)", n.dir, formatBytes(free)))
		}
	}
	return strings.Join(parts, "; ")
}

// lastPanic returns the message of the last PANIC in the last
// crashLogTail bytes of the server log at path, if the server has not
// started again since ("" otherwise).
func lastPanic(path string) string {
	f, err := os.Open(path)
	if err != nil {
		return ""
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return ""
	}
	off := max(0, fi.Size()-crashLogTail)
	b, err := io.ReadAll(io.NewSectionReader(f, off, fi.Size()-off))
	if err != nil {
		return ""
	}
	i := bytes.LastIndex(b, []byte("PANIC:"))
	if i < 0 || bytes.Contains(b[i:], []byte("database system is ready to accept")) {
		return ""
	}
	line, _, _ := bytes.Cut(b[i:], []byte("\n"))
	return "PANIC: " + strings.TrimSpace(string(line[len("PANIC:"):]))
}
