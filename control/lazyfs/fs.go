package lazyfs

import (
	"context"
	"fmt"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/hanwen/go-fuse/v2/fs"
	"github.com/hanwen/go-fuse/v2/fuse"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/zenithdb/zenith/pageserver/api"
)

// Options configure a lazy file system.
type Options struct {
	// Backing is the directory the lazy basebackup was unpacked into.
	// The manifest's files appear in the mount from the start; each is
	// created in it, as a sparse file of its size, when first looked up.
	Backing string
	// Mountpoint is where PostgreSQL sees the data directory.
	Mountpoint string
	Manifest   *api.LazyManifest
	Client     *PageClient
	// CacheBytes bounds the fetched, unwritten blocks kept on disk; 0 is
	// no bound. Blocks the compute wrote are never dropped.
	CacheBytes int64
	// ReadAhead is how many blocks a sequential read fetches after the
	// ones asked for, in the same batch.
	ReadAhead uint32
	// PrewarmBytes is how much of the manifest's files the FS reads
	// through its mount once PostgreSQL is ready (see prewarm.go); 0 is
	// none.
	PrewarmBytes int64
	Log          zerolog.Logger
}

// FS is a mounted lazy file system.
type FS struct {
	manifest  *api.LazyManifest
	client    *PageClient
	readAhead uint32
	log       zerolog.Logger
	cache     *blockCache
	fetched   atomic.Int64
	fetches   atomic.Int64

	prewarmStop  context.CancelFunc
	prewarmDone  chan struct{}
	prewarmStats atomic.Pointer[PrewarmStats]

	backing  string
	uid, gid int // the backing directory's owner, given to new files

	mu sync.Mutex
	// files are the manifest's files by their backing inode number: the
	// kernel may forget a node and look it up again, and a file's state
	// must outlive that.
	files map[uint64]*lazyFile
	// pending are the manifest's files not yet created in the backing
	// directory, by path; pendingDirs the same by directory and name.
	pending     map[string]api.LazyFile
	pendingDirs map[string]map[string]bool
	// byPath are the created files' lazy state, by path.
	byPath map[string]*lazyFile

	mountpoint string
	server     *fuse.Server
	attrs      *attrRequests
}

// attrTimeout is how long the kernel trusts names and attributes: every
// change goes through this file system, so long is safe, and 0 is
// ruinous (PostgreSQL stats its files constantly; DESIGN section 7).
const attrTimeout = time.Minute

// Mount mounts the file system (as root, with DirectMount: no fusermount
// helper; AllowOther, as PostgreSQL runs as another user) and serves it
// until Unmount or Wait.
func Mount(o Options) (*FS, error) {
	f := &FS{manifest: o.Manifest, client: o.Client, readAhead: o.ReadAhead, log: o.Log, backing: o.Backing, mountpoint: o.Mountpoint,
		files: map[uint64]*lazyFile{}, pending: map[string]api.LazyFile{}, pendingDirs: map[string]map[string]bool{},
		byPath: map[string]*lazyFile{}, cache: newBlockCache(o.CacheBytes / blockSize)}
	var rootSt syscall.Stat_t
	if err := syscall.Stat(o.Backing, &rootSt); err != nil {
		return nil, err
	}
	f.uid, f.gid = int(rootSt.Uid), int(rootSt.Gid)
	for _, lf := range o.Manifest.Files {
		dir, name := path.Split(lf.Path)
		dir = strings.TrimSuffix(dir, "/")
		if err := os.MkdirAll(filepath.Join(o.Backing, filepath.FromSlash(dir)), 0o700); err != nil {
			return nil, err
		}
		f.pending[lf.Path] = lf
		if f.pendingDirs[dir] == nil {
			f.pendingDirs[dir] = map[string]bool{}
		}
		f.pendingDirs[dir][name] = true
	}
	root := &fs.LoopbackRoot{Path: o.Backing, Dev: rootSt.Dev}
	// NewNode gets the backing file's stat, which NodeWrapChilder (its
	// successor) does not: the inode number is what finds a lazy file.
	//lint:ignore SA1019 see above
	root.NewNode = func(r *fs.LoopbackRoot, _ *fs.Inode, _ string, st *syscall.Stat_t) fs.InodeEmbedder {
		return &node{LoopbackNode: fs.LoopbackNode{RootData: r}, fs: f, lazy: f.lazyFile(st)}
	}
	//lint:ignore SA1019 see root.NewNode
	root.RootNode = root.NewNode(root, nil, "", &rootSt)
	timeout, negative := attrTimeout, time.Second
	opts := &fs.Options{
		MountOptions: fuse.MountOptions{
			AllowOther: true, DirectMount: true, FsName: "zenith-lazy", Name: "zenith",
			// The kernel keeps what it read of a file across opens and
			// writes (FOPEN_KEEP_CACHE): every change passes here.
			ExplicitDataCacheControl: true,
			// Background requests (the kernel's read-ahead and
			// write-back, up to MaxWrite each) in flight at once: each
			// holds a buffer of its size here, so this bounds the
			// buffers in use (see SetMemoryLimit).
			MaxBackground: maxBackground,
			// Requests of up to 1 MiB (the kernel's limit, 256 pages):
			// a sequential scan's read-ahead reaches this process in
			// 128-block reads, not 16-block ones (see kernelReadAhead).
			MaxWrite:     kernelReadAhead,
			MaxReadAhead: kernelReadAhead,
			// READDIRPLUS looks up every entry listed, which creates
			// every pending file of the directory (materialize):
			// PostgreSQL lists each database's directory at start
			// (RemovePgTempFiles) and needs only the names.
			DisableReadDirPlus: true,
			// pg_wal is a link out of the mount (see control's
			// buildLazyDataDir) that every backend resolves; links
			// here never change.
			EnableSymlinkCaching: true,
			// The kernel's writeback cache: writes land in the page
			// cache and reach this process as WRITE requests of up to
			// MaxWrite when the kernel writes dirty pages back, and the
			// kernel keeps a file's size itself. Without it, every
			// write was a round trip (or, on passthrough files, left
			// the size invalid, and PostgreSQL's lseek to the end of a
			// relation was one: a GETATTR per block a relation grew
			// by). The kernel allows no passthrough with it.
			ExtraCapabilities:    fuse.CAP_WRITEBACK_CACHE,
			DisabledCapabilities: fuse.CAP_PASSTHROUGH,
			// Answers are written with writev. With splice, go-fuse
			// first wrote each READ answer's header into a pipe and,
			// finding data rather than a file descriptor to splice
			// from, emptied the pipe again (splice to /dev/null, an
			// ioctl): three system calls for nothing per read.
			DisableSplice: true,
		},
		EntryTimeout: &timeout, AttrTimeout: &timeout, NegativeTimeout: &negative,
	}
	f.attrs = &attrRequests{RawFileSystem: fs.NewNodeFS(root.RootNode, opts)}
	server, err := fuse.NewServer(f.attrs, o.Mountpoint, &opts.MountOptions)
	if err != nil {
		return nil, fmt.Errorf("mount FUSE at %s: %w", o.Mountpoint, err)
	}
	// go-fuse keeps up to one more thread blocked reading /dev/fuse
	// than GOMAXPROCS (at least 2) at NewServer, and a fetch waits for
	// the page server in the thread that read its request (waitConn,
	// PageClientOptions.WaitInThread). More Ps than those threads leave
	// sysmon an idle P, so it takes none back from a blocked thread
	// (a hand-off and a thread woken to spin) and backs off from
	// polling every 20 µs. The process serves one node, nothing else.
	runtime.GOMAXPROCS(max(runtime.GOMAXPROCS(0), procsPerCPU*runtime.NumCPU()))
	go server.Serve()
	if err := server.WaitMount(); err != nil {
		return nil, fmt.Errorf("mount FUSE at %s: %w", o.Mountpoint, err)
	}
	f.server = server
	if err := setBDI(o.Mountpoint, "read_ahead_kb", kernelReadAhead>>10); err != nil {
		// Reads still work, in smaller requests.
		f.log.Warn().Err(err).Msg("kernel read-ahead of the lazy mount left at its default")
	}
	// The kernel holds a FUSE mount to 1% of the dirty page limit
	// (max_ratio 1, strict_limit), against servers that would pin the
	// machine's memory. This one is the node's own, run by root; held
	// to 1% (about 40 MB here), a bulk load's pages went back to it
	// half-written: every block PostgreSQL extends a relation by is
	// written twice (zeros, then its rows), and the zeros went out
	// first. pgbench -i -s 50: 2.66 CPU s of this process with the
	// limit, 0.76 without. Its dirty pages stay under the kernel's
	// global limits, as a local disk's do.
	for _, b := range []struct {
		name  string
		value int
	}{{"max_ratio", 100}, {"strict_limit", 0}} {
		if err := setBDI(o.Mountpoint, b.name, b.value); err != nil {
			f.log.Warn().Err(err).Msg("dirty page limit of the lazy mount left at the kernel's default")
		}
	}
	if o.PrewarmBytes > 0 {
		f.startPrewarm(o.PrewarmBytes)
	}
	return f, nil
}

// maxBackground is how many background requests the kernel sends at
// once (FUSE's max_background).
const maxBackground = 32

// procsPerCPU is the FUSE server's GOMAXPROCS per CPU once mounted.
const procsPerCPU = 4

// kernelReadAhead is the kernel's read-ahead window on the mount, in
// bytes. The kernel caps a FUSE mount's window at its default, 128 KiB,
// whatever the server asks for at INIT: a cold sequential scan then
// reaches this process as one 16-block read after another, each a round
// trip through the kernel and this process's request loop. A window of
// 128 blocks makes them eight times fewer.
const kernelReadAhead = 1 << 20

// setBDI sets a setting of the backing device info of the file system
// mounted at mountpoint, named by its device number
// (/sys/class/bdi/MAJOR:MINOR/NAME).
func setBDI(mountpoint, name string, value int) error {
	var st syscall.Stat_t
	if err := syscall.Stat(mountpoint, &st); err != nil {
		return fmt.Errorf("set %s: %w", name, err)
	}
	p := fmt.Sprintf("/sys/class/bdi/%d:%d/%s", unix.Major(st.Dev), unix.Minor(st.Dev), name)
	if err := os.WriteFile(p, []byte(strconv.Itoa(value)), 0); err != nil {
		return fmt.Errorf("set %s: %w", name, err)
	}
	return nil
}

// Wait waits until the file system is unmounted.
func (f *FS) Wait() { f.server.Wait() }

// Unmount writes the kernel's dirty pages back to the backing files,
// then unmounts; it fails while files are open (PostgreSQL runs). The
// writeback comes first because the unmount does not wait for it: a
// FUSE unmount ends the connection (fuse_conn_destroy) before the
// superblock's last sync, and pages still dirty then are dropped.
func (f *FS) Unmount() error {
	f.stopPrewarm()
	if err := syncFS(f.mountpoint); err != nil {
		return err
	}
	return f.server.Unmount()
}

// syncFS writes back the dirty pages of the file system mounted at dir
// (syncfs): here, WRITE requests to this process, then each written
// into its backing file.
func syncFS(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	defer d.Close()
	if err := unix.Syncfs(int(d.Fd())); err != nil {
		return fmt.Errorf("sync %s: %w", dir, err)
	}
	return nil
}

// AttrRequests is the number of GETATTR requests served so far.
func (f *FS) AttrRequests() int64 { return f.attrs.n.Load() }

// Fetched is the number of blocks fetched from the page server so far.
func (f *FS) Fetched() int64 { return f.fetched.Load() }

// Fetches is the number of fetches (pipelined batches of blocks of one
// file) so far.
func (f *FS) Fetches() int64 { return f.fetches.Load() }

func (f *FS) lazyFile(st *syscall.Stat_t) *lazyFile {
	if st == nil || st.Mode&syscall.S_IFMT != syscall.S_IFREG {
		return nil
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.files[st.Ino]
}

// materialize creates the backing file of the manifest's file at rel
// (a path relative to the root) if it is still pending: a sparse file of
// its size, owned as the backing directory is.
func (f *FS) materialize(rel string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	lf, ok := f.pending[rel]
	if !ok {
		return nil
	}
	p := filepath.Join(f.backing, filepath.FromSlash(rel))
	file, err := os.OpenFile(p, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return fmt.Errorf("create backing file %s: %w", rel, err)
	}
	err = file.Truncate(lf.Size)
	if err == nil {
		err = file.Chown(f.uid, f.gid)
	}
	var st syscall.Stat_t
	if err == nil {
		err = syscall.Fstat(int(file.Fd()), &st)
	}
	if cerr := file.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(p)
		return fmt.Errorf("create backing file %s: %w", rel, err)
	}
	f.files[st.Ino] = newLazyFile(f, p, lf)
	f.byPath[rel] = f.files[st.Ino]
	delete(f.pending, rel)
	dir, name := path.Split(rel)
	delete(f.pendingDirs[strings.TrimSuffix(dir, "/")], name)
	return nil
}

// pendingIn returns the names of the pending files in directory rel.
func (f *FS) pendingIn(rel string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	names := make([]string, 0, len(f.pendingDirs[rel]))
	for n := range f.pendingDirs[rel] {
		names = append(names, n)
	}
	return names
}

// forget drops the lazy state of the backing file at p before it is
// unlinked or replaced: its inode number may be given to a new file.
func (f *FS) forget(p string) {
	var st syscall.Stat_t
	if err := syscall.Lstat(p, &st); err != nil || st.Nlink > 1 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.files, st.Ino)
}

// node is a loopback node; a file of the manifest has its lazy state.
type node struct {
	fs.LoopbackNode
	fs   *FS
	lazy *lazyFile
}

var (
	_ fs.NodeOpener     = (*node)(nil)
	_ fs.NodeSetattrer  = (*node)(nil)
	_ fs.NodeUnlinker   = (*node)(nil)
	_ fs.NodeRenamer    = (*node)(nil)
	_ fs.NodeLookuper   = (*node)(nil)
	_ fs.NodeGetxattrer = (*node)(nil)
	_ fs.NodeCreater    = (*node)(nil)

	_ fs.NodeOpendirHandler = (*node)(nil)
)

func (n *node) childPath(name string) string {
	return filepath.Join(n.RootData.Path, n.Path(n.Root()), name)
}

// childRel is the path of the child name relative to the root, as the
// manifest writes it.
func (n *node) childRel(name string) string {
	return path.Join(n.Path(n.Root()), name)
}

// Lookup creates a pending file's backing file first: from then on it
// is an ordinary file of the backing directory.
func (n *node) Lookup(ctx context.Context, name string, out *fuse.EntryOut) (*fs.Inode, syscall.Errno) {
	if err := n.fs.materialize(n.childRel(name)); err != nil {
		n.fs.log.Error().Err(err).Msg("lazy file system")
		return nil, syscall.EIO
	}
	return n.LoopbackNode.Lookup(ctx, name, out)
}

// Getxattr says extended attributes are not supported (ENOSYS), so the
// kernel stops asking: without that it asks for security.capability
// before every write, a round trip to this process per block written
// (two in three requests of a bulk load).
// PostgreSQL uses no extended attributes.
func (n *node) Getxattr(ctx context.Context, attr string, dest []byte) (uint32, syscall.Errno) {
	return 0, syscall.ENOSYS
}

// OpendirHandle lists a directory with its pending files.
func (n *node) OpendirHandle(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	pending := n.fs.pendingIn(n.Path(n.Root()))
	if len(pending) == 0 {
		return n.LoopbackNode.OpendirHandle(ctx, flags)
	}
	entries, err := os.ReadDir(filepath.Join(n.RootData.Path, n.Path(n.Root())))
	if err != nil {
		return nil, 0, fs.ToErrno(err)
	}
	list := []fuse.DirEntry{{Name: ".", Mode: syscall.S_IFDIR}, {Name: "..", Mode: syscall.S_IFDIR}}
	for _, e := range entries {
		de := fuse.DirEntry{Name: e.Name(), Mode: uint32(syscall.S_IFREG)}
		if info, err := e.Info(); err == nil {
			if st, ok := info.Sys().(*syscall.Stat_t); ok {
				de.Mode, de.Ino = st.Mode, st.Ino
			}
		}
		list = append(list, de)
	}
	for i, name := range pending {
		// Not a backing inode number yet; readdir callers need one that
		// is not 0.
		list = append(list, fuse.DirEntry{Name: name, Mode: syscall.S_IFREG, Ino: 1<<62 + uint64(i)})
	}
	return fs.NewListDirStream(list).(fs.FileHandle), 0, 0
}

// Open serves a lazy file through Go; any other file is a plain
// loopback file. Both keep the kernel's cache of the file across opens
// (FOPEN_KEEP_CACHE): every change passes through this file system, and
// with the writeback cache the kernel's pages are the newest copy.
func (n *node) Open(ctx context.Context, flags uint32) (fs.FileHandle, uint32, syscall.Errno) {
	if n.lazy == nil {
		fh, fl, errno := n.LoopbackNode.Open(ctx, flags)
		return fh, fl | fuse.FOPEN_KEEP_CACHE, errno
	}
	if flags&syscall.O_TRUNC != 0 {
		if err := n.lazy.truncate(ctx, 0); err != nil {
			return nil, 0, n.fs.errno("truncate", n.lazy, err)
		}
	}
	return &handle{lf: n.lazy}, fuse.FOPEN_KEEP_CACHE, 0
}

// Create is the loopback's, keeping the kernel's cache as Open does.
func (n *node) Create(ctx context.Context, name string, flags uint32, mode uint32, out *fuse.EntryOut) (*fs.Inode, fs.FileHandle, uint32, syscall.Errno) {
	inode, fh, fl, errno := n.LoopbackNode.Create(ctx, name, flags, mode, out)
	return inode, fh, fl | fuse.FOPEN_KEEP_CACHE, errno
}

// kernelTimes are the fields of the SETATTR by which the kernel, with
// the writeback cache, writes an inode's times back (fuse_flush_times).
const kernelTimes = fuse.FATTR_MTIME | fuse.FATTR_CTIME | fuse.FATTR_FH

// Setattr truncates a lazy file through its state; everything else is
// the loopback's. The kernel's write-back of the times of a file that
// is no longer linked (dropped while a backend still had it open) is
// answered without an update: there is no path to update, and the
// kernel ignores the reply's attributes. Refused, it would become a
// write-back error of the whole file system (syncfs fails with ENOENT).
func (n *node) Setattr(ctx context.Context, f fs.FileHandle, in *fuse.SetAttrIn, out *fuse.AttrOut) syscall.Errno {
	if in.Valid&^kernelTimes == 0 && f == nil && !n.IsRoot() {
		if _, parent := n.Parent(); parent == nil {
			return 0
		}
	}
	if n.lazy == nil {
		return n.LoopbackNode.Setattr(ctx, f, in, out)
	}
	if size, ok := in.GetSize(); ok {
		if err := n.lazy.truncate(ctx, int64(size)); err != nil {
			return n.fs.errno("truncate", n.lazy, err)
		}
		in.Valid &^= fuse.FATTR_SIZE
	}
	return n.LoopbackNode.Setattr(ctx, nil, in, out)
}

func (n *node) Unlink(ctx context.Context, name string) syscall.Errno {
	if err := n.fs.materialize(n.childRel(name)); err != nil {
		return syscall.EIO
	}
	n.fs.forget(n.childPath(name))
	return n.LoopbackNode.Unlink(ctx, name)
}

func (n *node) Rename(ctx context.Context, name string, newParent fs.InodeEmbedder, newName string, flags uint32) syscall.Errno {
	if err := n.fs.materialize(n.childRel(name)); err != nil {
		return syscall.EIO
	}
	if p, ok := newParent.(*node); ok {
		if err := n.fs.materialize(p.childRel(newName)); err != nil {
			return syscall.EIO
		}
		n.fs.forget(p.childPath(newName))
	}
	return n.LoopbackNode.Rename(ctx, name, newParent, newName, flags)
}

// errno logs a failed lazy operation and turns it into EIO, which
// PostgreSQL reports as an ERROR of the statement that read (a fetch
// that timed out, a page server that is down or answered an error).
func (f *FS) errno(op string, lf *lazyFile, err error) syscall.Errno {
	f.log.Error().Err(err).Str("file", lf.info.Path).Str("op", op).Msg("lazy file operation failed")
	return syscall.EIO
}

// handle is an open lazy file. It does not offer a passthrough fd: its
// reads must reach ensure.
type handle struct{ lf *lazyFile }

var (
	_ fs.FileReader    = (*handle)(nil)
	_ fs.FileWriter    = (*handle)(nil)
	_ fs.FileGetattrer = (*handle)(nil)
	_ fs.FileFsyncer   = (*handle)(nil)
	_ fs.FileFlusher   = (*handle)(nil)
)

func (h *handle) Read(ctx context.Context, buf []byte, off int64) (fuse.ReadResult, syscall.Errno) {
	n, err := h.lf.read(ctx, buf, off)
	if err != nil {
		return nil, h.lf.fs.errno("read", h.lf, err)
	}
	return fuse.ReadResultData(buf[:n]), 0
}

func (h *handle) Write(ctx context.Context, data []byte, off int64) (uint32, syscall.Errno) {
	n, err := h.lf.write(ctx, data, off)
	if err != nil {
		return uint32(n), h.lf.fs.errno("write", h.lf, err)
	}
	return uint32(n), 0
}

func (h *handle) Getattr(ctx context.Context, out *fuse.AttrOut) syscall.Errno {
	var st syscall.Stat_t
	if err := h.lf.stat(&st); err != nil {
		return fs.ToErrno(err)
	}
	out.FromStat(&st)
	return 0
}

func (h *handle) Fsync(ctx context.Context, flags uint32) syscall.Errno {
	h.lf.mu.Lock()
	fd := h.lf.fd
	h.lf.mu.Unlock()
	if fd < 0 {
		return 0
	}
	return fs.ToErrno(syscall.Fdatasync(fd))
}

func (h *handle) Flush(ctx context.Context) syscall.Errno { return 0 }

// blockCache bounds the fetched blocks kept on disk: first in, first
// out, each dropped only while it is still a clean fetched copy.
type blockCache struct {
	mu    sync.Mutex
	limit int64
	ring  []cacheEntry
	head  int
	n     int
}

type cacheEntry struct {
	lf *lazyFile
	b  uint32
}

func newBlockCache(limit int64) *blockCache {
	return &blockCache{limit: limit}
}

// added records newly fetched blocks and evicts the oldest ones over
// the limit.
func (c *blockCache) added(lf *lazyFile, blocks []uint32) {
	if c.limit <= 0 || len(blocks) == 0 {
		return
	}
	var victims []cacheEntry
	c.mu.Lock()
	if c.ring == nil {
		c.ring = make([]cacheEntry, c.limit)
	}
	for _, b := range blocks {
		if int64(c.n) == c.limit {
			victims = append(victims, c.ring[c.head])
			c.head = (c.head + 1) % len(c.ring)
			c.n--
		}
		c.ring[(c.head+c.n)%len(c.ring)] = cacheEntry{lf, b}
		c.n++
	}
	c.mu.Unlock()
	for _, v := range victims {
		v.lf.evict(v.b)
	}
}
