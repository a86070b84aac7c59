package pageserver

import "syscall"

// reservedFDs is what FitOpenFiles keeps of the process's file
// descriptors for everything but layer files, measured on a page server
// under RLIMIT_NOFILE 32 with one compute streaming to it: stdin, stdout
// and stderr; the Go runtime's epoll, eventfd, pidfd and cgroup files;
// the two listeners and the WAL receiver's connection; the WAL store's
// segment; the pipes of two WAL redo processes (three each) and those of
// one being started. Page service connections (a lazy compute keeps
// several) and files being written share what is left with the layer
// files.
const reservedFDs = 20

// minOpenLayerFiles is the fewest layer files FitOpenFiles leaves open.
const minOpenLayerFiles = 4

// FitOpenFiles returns max_open_layer_files fitted to a process limit of
// nofile file descriptors (RLIMIT_NOFILE): at most half of what
// reservedFDs leaves, at least minOpenLayerFiles, and never more than
// configured. A limit of 0 is none.
func FitOpenFiles(configured int, nofile uint64) int {
	if nofile == 0 {
		return configured
	}
	fit := uint64(minOpenLayerFiles)
	if nofile > reservedFDs+2*minOpenLayerFiles {
		fit = (nofile - reservedFDs) / 2
	}
	if uint64(configured) <= fit {
		return configured
	}
	return int(fit)
}

// FileLimit is this process's limit of open file descriptors (the soft
// RLIMIT_NOFILE, which the Go runtime raises to the hard one at start), 0
// if it cannot be read.
func FileLimit() uint64 {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur == ^uint64(0) {
		return 0
	}
	return lim.Cur
}
