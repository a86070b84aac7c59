package pgdata_test

import (
	"os"
	"syscall"
)

// chownLike gives path the owner of the file described by like.
func chownLike(path string, like os.FileInfo) error {
	st := like.Sys().(*syscall.Stat_t)
	return os.Chown(path, int(st.Uid), int(st.Gid))
}
