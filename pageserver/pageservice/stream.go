package pageservice

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/zenithdb/zenith/pageserver/api"
	"github.com/zenithdb/zenith/pageserver/datadir"
	"github.com/zenithdb/zenith/pgwire"
	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/pgdata"
)

// pagestream answers page requests (api's pagestream.go) on one timeline until
// the client ends the COPY. A request that fails (unknown relation, LSN
// not reached in time, a redo error) gets an error response and the
// stream goes on; a message that is not a valid request ends the COPY
// with an ErrorResponse (08P01), after which the session serves other
// commands; a message that cannot be read at all ends the session.
func (ps *Service) pagestream(ctx context.Context, sess *pgwire.Session, tl *repo.Timeline) error {
	cb, err := sess.CopyBoth()
	if err != nil {
		return err
	}
	// A client pipelines its requests (lazyfs sends a batch, then reads
	// the answers): each is answered as it is read, on this goroutine,
	// and the answers are queued; the stream sends them once no request
	// is waiting (before Receive waits for the client), one write for a
	// batch and no hand-off between goroutines for a single request.
	var sizes relSizeMemo
	var resp []byte // reused: Queue copies it
	var pages pageAnswers
	for {
		msg, err := cb.Receive()
		if err == nil {
			var req api.PageRequest
			if req, err = api.ParsePageRequest(msg); err == nil {
				if req.Tag == api.TagGetPagesRequest {
					err = ps.answerPages(ctx, tl, req, &sizes, &pages, cb.Queue)
				} else {
					resp = ps.answer(ctx, tl, req, &sizes, resp[:0])
					err = cb.Queue(resp)
				}
				if err != nil {
					return err
				}
				continue
			}
			err = pgwire.Errorf(pgwire.CodeProtocolViolation, "malformed page request: %v", err)
		}
		// The COPY ends here: the session reads what follows.
		if ferr := cb.Flush(); ferr != nil {
			return ferr
		}
		if !errors.Is(err, pgwire.ErrCopyDone) {
			return err
		}
		return cb.Close()
	}
}

// pageAnswers holds the answers to one getpages request: reused from
// request to request.
type pageAnswers struct {
	buf  []byte
	ends []int
	// later are the pages whose redo was under way, in block order;
	// pending holds the answer of one of them while it is sent.
	later   []*pendingPage
	pending []byte
}

// minScanBlocks is the shortest getpages request read as part of a scan,
// whose layer file blocks bypass the block cache (repo.WithBatchRead):
// the FUSE server's fetches of a sequential read are 128 blocks or more.
// A shorter run, such as the read of a random 1 MiB, is read through the
// cache, where its blocks may be found again. Measured with the cache
// for every batch, a cold scan cost the page server 2.3 s of CPU instead
// of 1.1 s (the cache, in the Go heap, grows into new memory: page
// faults); without the cache for any batch, the GetPage benchmark's
// random batches of 32 blocks cost 40-60% more (their blocks, within the
// cache, decoded again every time).
const minScanBlocks = 64

// maxRetainedAnswers is the largest answer buffer a stream keeps between
// requests: that of 256 pages, the FUSE server's largest fetch (a read
// of 1 MiB and its read-ahead of 128 blocks). A buffer made anew for
// every batch cost a cold scan a sixth of the page server's CPU: the
// first write to each of its pages is a page fault.
const maxRetainedAnswers = 256 * (1 + pgdata.BlockSize)

// maxRedoAhead bounds the pages of one getpages request whose redo runs
// while the request reads on (repo.Timeline.GetLater): the copies of
// their histories in memory, and the requests queued to the redo
// processes.
const maxRedoAhead = 32

// answerPages answers a getpages request: for each of its blocks, the
// answer a getpage request of that block gets, all read in one batch
// (repo.WithBatchRead: one pass over each layer file instead of a lookup
// per block). A page that needs redo is rebuilt on another goroutine
// while the batch reads the next blocks' histories, so that the redo
// processes work beside the reader (on another core) and their requests
// are pipelined, not one round trip after another. The answers are sent
// once the batch has ended, in order, so that a client slow to read
// them does not keep layer files locked.
func (ps *Service) answerPages(ctx context.Context, tl *repo.Timeline, req api.PageRequest, sizes *relSizeMemo, a *pageAnswers, send func([]byte) error) error {
	if need := int(req.Blocks) * (1 + pgdata.BlockSize); cap(a.buf) < need {
		a.buf = make([]byte, 0, need)
	}
	a.buf, a.ends, a.later = a.buf[:0], a.ends[:0], a.later[:0]
	bctx, end := repo.WithBatchRead(ctx, req.Blocks >= minScanBlocks)
	one := req
	one.Tag, one.Blocks = api.TagGetPageRequest, 0
	waited := 0 // a.later[:waited] are done
	for i := range req.Blocks {
		one.Block = req.Block + i
		var p *pendingPage
		a.buf, p = ps.answerLater(bctx, tl, one, sizes, a.buf, true)
		a.ends = append(a.ends, len(a.buf))
		if p != nil {
			p.at = int(i)
			a.later = append(a.later, p)
			if len(a.later)-waited > maxRedoAhead {
				a.later[waited].wait()
				waited++
			}
		}
	}
	if err := end(); err != nil {
		// The answers were read before: only closing the layer files'
		// iterators failed.
		ps.log.Error().Err(err).Str("timeline", tl.ID().String()).Msg("end of a batch read")
	}
	// Every redo is waited for, whatever happens next: none outlives
	// the request.
	for _, p := range a.later {
		p.wait()
	}
	start, next := 0, 0
	for i, e := range a.ends {
		msg := a.buf[start:e]
		if next < len(a.later) && a.later[next].at == i {
			a.pending = ps.finishLater(tl, a.later[next], a.pending[:0])
			msg = a.pending
			next++
		}
		if err := send(msg); err != nil {
			return err
		}
		start = e
	}
	if cap(a.buf) > maxRetainedAnswers {
		a.buf = nil
	}
	return nil
}

// relSizeMemo remembers the size of the last fork a stream asked for at
// a fixed LSN, which cannot change: a batch of blocks of one fork looks
// the fork up once, not once a block; and whether the timeline has data
// checksums.
type relSizeMemo struct {
	ok     bool
	rel    pgdata.RelFileNode
	fork   pgdata.ForkNumber
	lsn    pgdata.LSN
	blocks uint32

	// checksums says whether the stream's timeline has data checksums,
	// once looked up: it does not change over a timeline's life.
	checksums *bool
}

// dataChecksums is DatadirReader.DataChecksums, looked up once a stream.
func (m *relSizeMemo) dataChecksums(ctx context.Context, r *datadir.DatadirReader) (bool, error) {
	if m.checksums != nil {
		return *m.checksums, nil
	}
	on, err := r.DataChecksums(ctx)
	if err != nil {
		return false, err
	}
	m.checksums = &on
	return on, nil
}

var requestNames = map[byte]string{
	api.TagExistsRequest: "exists", api.TagNblocksRequest: "nblocks",
	api.TagGetPageRequest: "getpage", api.TagDbSizeRequest: "dbsize",
}

// answer runs one request and appends its encoded response to dst, an
// error response if it fails.
func (ps *Service) answer(ctx context.Context, tl *repo.Timeline, req api.PageRequest, sizes *relSizeMemo, dst []byte) []byte {
	dst, _ = ps.answerLater(ctx, tl, req, sizes, dst, false)
	return dst
}

// pendingPage is the answer to a getpage request whose page's redo is
// under way (answerLater).
type pendingPage struct {
	page      *datadir.PageLater
	req       api.PageRequest
	checksums bool
	start     time.Time
	// at is the block's place in its getpages request.
	at int
	// The page and error once waited for.
	done   bool
	result []byte
	err    error
}

func (p *pendingPage) wait() {
	if !p.done {
		p.result, p.err = p.page.Wait()
		p.done = true
	}
}

// answerLater is answer; with later, a getpage request whose page needs
// redo appends nothing and returns the page, pending, for finishLater.
func (ps *Service) answerLater(ctx context.Context, tl *repo.Timeline, req api.PageRequest, sizes *relSizeMemo, dst []byte, later bool) ([]byte, *pendingPage) {
	start := time.Now()
	resp, p, err := ps.serve(ctx, tl, req, sizes, dst, later)
	if p != nil {
		p.req, p.start = req, start
		return dst, p
	}
	return ps.finish(tl, req, start, resp, err, dst), nil
}

// finishLater appends the answer of a pending page to dst, once waited
// for.
func (ps *Service) finishLater(tl *repo.Timeline, p *pendingPage, dst []byte) []byte {
	p.wait()
	resp, err := dst, p.err
	if err == nil {
		resp = appendPage(dst, p.result, p.req.Block, p.checksums)
	}
	return ps.finish(tl, p.req, p.start, resp, err, dst)
}

// finish counts a request started at start, and returns resp, its
// answer, or if it failed (err), dst with an error response appended.
func (ps *Service) finish(tl *repo.Timeline, req api.PageRequest, start time.Time, resp []byte, err error, dst []byte) []byte {
	result := "ok"
	if err != nil {
		result = "error"
	}
	ps.metrics.PageRequests.WithLabelValues(requestNames[req.Tag], result).Inc()
	if req.Tag == api.TagGetPageRequest {
		ps.metrics.GetPageSeconds.Observe(time.Since(start).Seconds())
	}
	if err != nil {
		e, ok := SQLError(err).(*pgwire.Error)
		if !ok {
			ps.log.Error().Err(err).Str("timeline", tl.ID().String()).Str("request", requestNames[req.Tag]).
				Msg("page request failed")
			return append(dst, api.ErrorPageResponse(pgwire.CodeInternalError, err.Error())...)
		}
		return append(dst, api.ErrorPageResponse(e.Code, e.Message)...)
	}
	return resp
}

// serve answers one request as PostgreSQL's storage manager (smgr) would
// for the relation files as of the request's LSN:
//
//   - exists: whether the fork is in the database's relation directory
//     (smgrexists);
//   - nblocks: the fork's size in blocks (smgrnblocks); a fork that does
//     not exist is an error, as opening its file is in md.c;
//   - getpage: the block as of the LSN; a block inside the fork that WAL
//     never wrote reads as zeros (a hole md.c left by extending past it),
//     and a block at or beyond the fork's size is an error (58P01 for a
//     missing fork, XX001 as mdread reports a short read), never a page;
//   - dbsize: the sum of the database's fork sizes in bytes
//     (pg_database_size of its default-tablespace files).
//
// The response is appended to dst.
//
// With later, a page that needs redo is not appended: its redo goes on
// in the background and serve returns it pending.
func (ps *Service) serve(ctx context.Context, tl *repo.Timeline, req api.PageRequest, sizes *relSizeMemo, dst []byte, later bool) ([]byte, *pendingPage, error) {
	if req.Tag == api.TagGetPageRequest {
		return ps.getPage(ctx, tl, req, sizes, dst, later)
	}
	resp, err := ps.serveOther(ctx, tl, req, sizes, dst)
	return resp, nil, err
}

// getPage answers a getpage request for serve.
func (ps *Service) getPage(ctx context.Context, tl *repo.Timeline, req api.PageRequest, sizes *relSizeMemo, dst []byte, later bool) ([]byte, *pendingPage, error) {
	lsn, err := ps.requestLSN(ctx, tl, req)
	if err != nil {
		return nil, nil, err
	}
	r := datadir.NewDatadirReader(tl, lsn)
	n, err := sizes.size(ctx, r, req)
	if err != nil {
		return nil, nil, err
	}
	if req.Block >= n {
		return nil, nil, &pgwire.Error{Code: pgwire.CodeDataCorrupted,
			Message: fmt.Sprintf("could not read block %d of relation %v fork %v at %v: the fork has %d blocks", req.Block, req.Rel, req.Fork, lsn, n)}
	}
	// Looked up before the page is read: in a batch read
	// (answerPages) the page is valid only until the next read.
	checksums, err := sizes.dataChecksums(ctx, r)
	if err != nil {
		return nil, nil, err
	}
	var page []byte
	if later {
		var p *datadir.PageLater
		if page, p, err = r.RelPageLater(ctx, req.Rel, req.Fork, req.Block); p != nil {
			return nil, &pendingPage{page: p, checksums: checksums}, nil
		}
	} else {
		page, err = r.RelPage(ctx, req.Rel, req.Fork, req.Block)
	}
	if err != nil {
		return nil, nil, err
	}
	return appendPage(dst, page, req.Block, checksums), nil, nil
}

// appendPage appends a getpage answer holding page, block blk of its
// fork, to dst. A page rebuilt by redo carries a stale checksum, and the
// compute checks it on every read: with checksums, it is set in the
// answer (the page itself may be the page cache's).
func appendPage(dst, page []byte, blk pgdata.BlockNumber, checksums bool) []byte {
	dst = api.AppendGetPageResponse(dst, page)
	if checksums {
		pgdata.SetPageChecksum(dst[len(dst)-pgdata.BlockSize:], blk)
	}
	return dst
}

// serveOther answers the requests other than getpage for serve.
func (ps *Service) serveOther(ctx context.Context, tl *repo.Timeline, req api.PageRequest, sizes *relSizeMemo, dst []byte) ([]byte, error) {
	lsn, err := ps.requestLSN(ctx, tl, req)
	if err != nil {
		return nil, err
	}
	r := datadir.NewDatadirReader(tl, lsn)
	switch req.Tag {
	case api.TagExistsRequest:
		ok, err := r.RelExists(ctx, req.Rel, req.Fork)
		if err != nil {
			return nil, err
		}
		return append(dst, api.ExistsResponse(ok)...), nil
	case api.TagNblocksRequest:
		n, err := existingRelSize(ctx, r, req)
		if err != nil {
			return nil, err
		}
		return append(dst, api.NblocksResponse(n)...), nil
	case api.TagDbSizeRequest:
		size, err := r.DBSize(ctx, datadir.Database{SpcNode: pgdata.DefaultTablespaceOID, DbNode: req.Rel.DbNode})
		if err != nil {
			return nil, err
		}
		return append(dst, api.DbSizeResponse(size)...), nil
	}
	return nil, fmt.Errorf("page request tag 0x%02x is parsed but not handled", req.Tag)
}

// existingRelSize is the size of a fork that exists; a missing fork is
// 58P01 (undefined_file), as PostgreSQL reports a missing relation file.
// size is existingRelSize, remembered while requests at one LSN ask
// for the same fork. A request for the latest LSN is never remembered:
// its LSN moves.
func (m *relSizeMemo) size(ctx context.Context, r *datadir.DatadirReader, req api.PageRequest) (uint32, error) {
	if m.ok && !req.Latest && m.rel == req.Rel && m.fork == req.Fork && m.lsn == r.LSN() {
		return m.blocks, nil
	}
	n, err := existingRelSize(ctx, r, req)
	if err != nil || req.Latest {
		return n, err
	}
	*m = relSizeMemo{ok: true, rel: req.Rel, fork: req.Fork, lsn: r.LSN(), blocks: n}
	return n, nil
}

func existingRelSize(ctx context.Context, r *datadir.DatadirReader, req api.PageRequest) (uint32, error) {
	ok, err := r.RelExists(ctx, req.Rel, req.Fork)
	if err != nil {
		return 0, err
	}
	if !ok {
		return 0, &pgwire.Error{Code: pgwire.CodeUndefinedFile,
			Message: fmt.Sprintf("relation %v fork %v does not exist at %v", req.Rel, req.Fork, r.LSN())}
	}
	return r.RelSize(ctx, req.Rel, req.Fork)
}

// requestLSN waits for the request's LSN and returns the LSN to read at:
// the request's own, or for a "latest" request the last record ingested
// once the request's LSN is reached.
func (ps *Service) requestLSN(ctx context.Context, tl *repo.Timeline, req api.PageRequest) (pgdata.LSN, error) {
	if err := ps.tenants.WaitForLSN(ctx, tl, req.LSN); err != nil {
		return 0, err
	}
	if req.Latest {
		return tl.LastRecordLSN(), nil
	}
	return req.LSN, nil
}
