package lazyfs

import (
	"sync/atomic"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// attrRequests stands between the kernel and the node file system and
// counts the GETATTR requests that reach this process. Without the
// writeback cache the kernel sent one per block a relation grew by
// (PostgreSQL's lseek to the end of a relation after a write, which
// left the size invalid): 16,447 of the 31,702 requests of a `pgbench
// -i -s 10`. The count is how a test sees that this stays off the
// write path.
type attrRequests struct {
	fuse.RawFileSystem
	n atomic.Int64
}

func (a *attrRequests) GetAttr(cancel <-chan struct{}, in *fuse.GetAttrIn, out *fuse.AttrOut) fuse.Status {
	a.n.Add(1)
	return a.RawFileSystem.GetAttr(cancel, in, out)
}
