package lazyfs

import (
	"sync"
	"sync/atomic"

	"github.com/hanwen/go-fuse/v2/fuse"
)

// passthroughReads stands between the kernel and the node file system
// and refuses READ requests on handles the kernel opened in passthrough
// mode. The kernel reads and writes such a handle's backing file itself;
// a READ on one can only come from readahead into the FUSE inode's own
// page cache, which nothing reads from: posix_fadvise(WILLNEED) is not
// passed through, and PostgreSQL prefetches with it (ANALYZE reads every
// block of a table of up to 30,000 blocks that way). Served, each such
// block was a round trip and a copy for nothing: 14,346 of the 31,702
// requests of a `pgbench -i -s 10` on a lazy compute. Refused, the
// readahead fails and leaves no page behind. A READ the kernel needed
// would get EIO, never wrong bytes.
type passthroughReads struct {
	fuse.RawFileSystem

	mu      sync.Mutex
	handles map[uint64]bool // file handles opened in passthrough mode
	refused atomic.Int64
}

func newPassthroughReads(fs fuse.RawFileSystem) *passthroughReads {
	return &passthroughReads{RawFileSystem: fs, handles: map[uint64]bool{}}
}

func (p *passthroughReads) opened(out *fuse.OpenOut) {
	if out.OpenFlags&fuse.FOPEN_PASSTHROUGH == 0 {
		return
	}
	p.mu.Lock()
	p.handles[out.Fh] = true
	p.mu.Unlock()
}

func (p *passthroughReads) Open(cancel <-chan struct{}, in *fuse.OpenIn, out *fuse.OpenOut) fuse.Status {
	st := p.RawFileSystem.Open(cancel, in, out)
	if st == fuse.OK {
		p.opened(out)
	}
	return st
}

func (p *passthroughReads) Create(cancel <-chan struct{}, in *fuse.CreateIn, name string, out *fuse.CreateOut) fuse.Status {
	st := p.RawFileSystem.Create(cancel, in, name, out)
	if st == fuse.OK {
		p.opened(&out.OpenOut)
	}
	return st
}

func (p *passthroughReads) Read(cancel <-chan struct{}, in *fuse.ReadIn, buf []byte) (fuse.ReadResult, fuse.Status) {
	p.mu.Lock()
	passthrough := p.handles[in.Fh]
	p.mu.Unlock()
	if passthrough {
		p.refused.Add(1)
		return nil, fuse.EIO
	}
	return p.RawFileSystem.Read(cancel, in, buf)
}

// Release forgets the handle before the node file system frees its
// number for reuse.
func (p *passthroughReads) Release(cancel <-chan struct{}, in *fuse.ReleaseIn) {
	p.mu.Lock()
	delete(p.handles, in.Fh)
	p.mu.Unlock()
	p.RawFileSystem.Release(cancel, in)
}
