package vfs

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// OpenFilesIn counts this process's file descriptors open on files under
// dir, on the operating system's file system (Linux's /proc/self/fd):
// what the layer file cache's bound on open files is checked against.
// It fails where /proc/self/fd cannot be read.
func OpenFilesIn(dir string) (int, error) {
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		return 0, fmt.Errorf("count open files: %w", err)
	}
	n := 0
	for _, fd := range fds {
		target, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if err == nil && strings.HasPrefix(target, dir+"/") {
			n++
		}
	}
	return n, nil
}
