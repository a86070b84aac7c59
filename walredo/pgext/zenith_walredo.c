/*-------------------------------------------------------------------------
 *
 * zenith_walredo.c
 *	  WAL redo for Zenith inside a stock PostgreSQL 15 `postgres --single`.
 *
 * Zenith's page server rebuilds a page by replaying WAL records onto an older
 * image of it. This module lets an unmodified PostgreSQL do the replaying with
 * its own resource managers' redo functions. The Go package walredo starts
 * `postgres --single` in a scratch data directory, sends the statement
 * "SELECT zenith_walredo_serve();" and from then on this function owns the
 * process: it reads requests on stdin and answers on stdout until stdin is
 * closed, then exits cleanly.
 *
 * PROTOCOL. After taking over, the function writes the line
 * "ZENITH_WALREDO_READY 1\n" to stdout (the text PostgreSQL printed before it
 * is to be skipped by the reader). Then every message, both ways, is
 *
 *		u8 type, u32 body length, body
 *
 * with all integers little-endian. Requests:
 *
 *	'R' redo: u32 spcnode, u32 dbnode, u32 relnode, u8 fork, u32 blkno,
 *		u8 flags (bit 0: a base image follows), [8192-byte base image],
 *		u32 nrecords, then per record: u64 LSN, u32 length, the raw record
 *		(XLogRecord header included, xl_tot_len bytes). The LSN is the end of
 *		the record (EndRecPtr), the one redo stamps on the pages it changes;
 *		no redo function of a page's resource manager needs the start.
 *		Records are in LSN order and each must reference the target block.
 *		Without a base image the page starts as zeros, as a page PostgreSQL
 *		reads beyond what was ever written.
 *	'M' mask: u8 rmgr id, u32 blkno, 8192-byte page. The page is masked with
 *		the resource manager's rm_mask (what wal_consistency_checking
 *		ignores).
 *
 * Replies, one per request and in request order:
 *
 *	'P' the 8192-byte page.
 *	'E' an error message (UTF-8 text). The process keeps serving.
 *
 * A malformed frame or a write failure ends the process with FATAL; a PANIC
 * in a redo function ends it too. The caller treats the end of stdout as the
 * failure of every request in flight.
 *
 * HOW REDO RUNS HERE. Each record is decoded with DecodeXLogRecord and handed
 * to RmgrTable[rmid].rm_redo with InRecovery set, as the startup process
 * would. Block numbers are never changed (heap redo writes them into ctids);
 * relations are: the target block is moved to a scratch relation in a scratch
 * database of our own (the tenant's relfilenodes could collide with the
 * scratch cluster's catalogs), and every other block of a record goes to a
 * scratch relation per block id holding an empty page stamped with LSN
 * FFFFFFFF/FFFFFFFF, so redo leaves it alone (an image of such a block is
 * still restored, as XLOG_FPI redo insists on). Scratch files grow sparsely:
 * only the block needed is written. Pages are installed in the buffer pool as
 * non-permanent buffers and all scratch buffers are dropped after every
 * request, so nothing with a foreign LSN is ever flushed through the scratch
 * cluster's WAL.
 *
 * Init forks (of unlogged relations) are redone in the scratch relation's
 * main fork. PostgreSQL keeps init-fork buffers in step with the disk
 * (XLogReadBufferForRedoExtended, and hash's metapage redo, call
 * FlushOneBuffer for INIT_FORKNUM, and such buffers are always
 * BM_PERMANENT), so a flush would call XLogFlush up to the page's LSN, a
 * position the scratch cluster's own WAL never reaches: "xlog flush request
 * ... is not satisfied". No redo function treats the init fork otherwise,
 * and block numbers stay as they are.
 *
 * Each request runs inside PG_TRY in a subtransaction: an ERROR rolls the
 * subtransaction back (releasing buffer locks and pins), is sent back as an
 * 'E' reply, and the process carries on. Log output goes to stderr; stdout
 * is reserved for replies (the original stdout is kept on a private
 * descriptor and fd 1 is pointed at stderr).
 *
 * Relation pages the records do not reference (the visibility map bits heap
 * records clear, CLOG, multixacts) are not this module's business: Zenith
 * applies those in Go.
 *
 *-------------------------------------------------------------------------
 */
#include "postgres.h"

#include <sys/resource.h>
#include <sys/uio.h>
#include <unistd.h>

#include "access/heapam_xlog.h"
#include "access/rmgr.h"
#include "access/xact.h"
#include "access/xlog.h"
#include "access/xlog_internal.h"
#include "access/xlogreader.h"
#include "access/xlogrecord.h"
#include "access/xlogutils.h"
#include "catalog/pg_control.h"
#include "catalog/pg_tablespace_d.h"
#include "fmgr.h"
#include "miscadmin.h"
#include "storage/bufmgr.h"
#include "storage/bufpage.h"
#include "storage/ipc.h"
#include "storage/smgr.h"
#include "utils/memutils.h"

#ifdef WORDS_BIGENDIAN
#error "the walredo protocol is little-endian and read with memcpy"
#endif

PG_MODULE_MAGIC;

PG_FUNCTION_INFO_V1(zenith_walredo_serve);

static char ready_line[] = "ZENITH_WALREDO_READY 1\n";

/* Message types. */
#define MSG_REDO	'R'
#define MSG_MASK	'M'
#define MSG_PAGE	'P'
#define MSG_ERROR	'E'

#define MSG_HEADER_SIZE 5
/* A record is at most XLogRecordMaxSize (1020 MB); leave room for the rest. */
#define MAX_MESSAGE_SIZE ((uint32) 1024 * 1024 * 1024)

#define REDO_FLAG_HAS_BASE 0x01

/*
 * The scratch database and relations. The OID is far above anything the
 * scratch cluster assigns (it never creates objects after initdb).
 */
#define SCRATCH_DB_OID		((Oid) 999999999)
#define TARGET_RELNODE		((Oid) 1)
#define OTHER_RELNODE_BASE	((Oid) 100)

static int	reply_fd = -1;
static XLogReaderState *reader;
static MemoryContext request_context;
static PGAlignedBlock zero_page;

/* Buffered reading of stdin. */
static char *in_buf;
static size_t in_len;
static size_t in_pos;
#define IN_BUF_SIZE (256 * 1024)

/* Body of the current message, and a MAXALIGNed copy of one record. */
static char *msg_buf;
static size_t msg_buf_size;
static char *rec_buf;
static size_t rec_buf_size;
static char *decode_buf;
static size_t decode_buf_size;

/* Cursor over a message body; short reads are an ERROR, never an overrun. */
typedef struct Cursor
{
	const char *p;
	size_t		left;
} Cursor;

/* The block a redo request rebuilds, as named by the tenant's WAL. */
typedef struct Target
{
	RelFileNode rnode;
	ForkNumber	fork;
	BlockNumber blkno;
} Target;

static void serve(void) pg_attribute_noreturn();
static bool read_input(char *dst, size_t n, bool eof_ok);
static void write_reply(char type, const char *body, uint32 len);
static void *grow(char **buf, size_t *size, size_t need);
static const char *take(Cursor *c, size_t n);
static uint8 take_u8(Cursor *c);
static uint32 take_u32(Cursor *c);
static uint64 take_u64(Cursor *c);
static void handle_redo(Cursor *c, char *page_out);
static void handle_mask(Cursor *c, char *page_out);
static void redo_record(const Target *target, const char *raw, uint32 len,
						XLogRecPtr lsn, Buffer target_buf, bool *target_new);
static void check_rmgr(const XLogRecord *rec, XLogRecPtr lsn);
static RelFileNode scratch_rnode(Oid relnode);
static ForkNumber scratch_fork(ForkNumber fork);
static Buffer install_page(RelFileNode rnode, ForkNumber fork,
						   BlockNumber blkno, const char *image);
static void drop_other_pages(bool *used);

/*
 * zenith_walredo_serve takes over the backend and serves redo requests until
 * stdin is closed. It never returns.
 */
Datum
zenith_walredo_serve(PG_FUNCTION_ARGS)
{
	struct rlimit no_core = {0, 0};
	MemoryContext old;

	if (IsUnderPostmaster)
		ereport(ERROR,
				(errcode(ERRCODE_FEATURE_NOT_SUPPORTED),
				 errmsg("zenith_walredo_serve runs only in a single-user backend (postgres --single)")));

	/* A PANIC on bad input must not leave a core file in the data directory. */
	(void) setrlimit(RLIMIT_CORE, &no_core);

	/*
	 * Keep the real stdout for replies and send whatever else might be printed
	 * there (PostgreSQL's single-user output) to stderr.
	 */
	fflush(stdout);
	reply_fd = dup(STDOUT_FILENO);
	if (reply_fd < 0 || dup2(STDERR_FILENO, STDOUT_FILENO) < 0)
		ereport(FATAL, (errcode_for_file_access(),
						errmsg("could not set up the reply descriptor: %m")));

	old = MemoryContextSwitchTo(TopMemoryContext);
	in_buf = palloc(IN_BUF_SIZE);
	reader = XLogReaderAllocate(wal_segment_size, NULL, XL_ROUTINE(), NULL);
	if (reader == NULL)
		ereport(FATAL, (errcode(ERRCODE_OUT_OF_MEMORY),
						errmsg("out of memory allocating a WAL reader")));
	request_context = AllocSetContextCreate(TopMemoryContext,
											"zenith walredo request",
											ALLOCSET_DEFAULT_SIZES);

	/*
	 * btree, GIN, GiST and SP-GiST redo allocate their working memory
	 * contexts in rm_startup, under the current context: TopMemoryContext.
	 */
	RmgrStartup();
	MemoryContextSwitchTo(old);

	BeginInternalSubTransaction(NULL);

	write_reply(0, NULL, 0);	/* the READY line; see write_reply */

	/*
	 * An error that escapes the per-request handling (one raised while
	 * cleaning up after another) must end the process: returned to
	 * PostgreSQL's single-user loop, it would read our requests as SQL.
	 */
	PG_TRY();
	{
		serve();
	}
	PG_CATCH();
	{
		ErrorData  *edata;

		MemoryContextSwitchTo(TopMemoryContext);
		edata = CopyErrorData();
		ereport(FATAL,
				(errmsg("walredo cannot go on after an error outside a request: %s",
						edata->message ? edata->message : "(no message)")));
	}
	PG_END_TRY();
	pg_unreachable();
}

static void
serve(void)
{
	PGAlignedBlock page;

	for (;;)
	{
		char		header[MSG_HEADER_SIZE];
		uint32		len;
		Cursor		c;
		char		type;

		if (!read_input(header, MSG_HEADER_SIZE, true))
			proc_exit(0);		/* stdin closed: the caller is done with us */
		type = header[0];
		memcpy(&len, header + 1, sizeof(len));
		if (len > MAX_MESSAGE_SIZE)
			ereport(FATAL,
					(errcode(ERRCODE_PROTOCOL_VIOLATION),
					 errmsg("walredo message of %u bytes exceeds the limit of %u",
							len, MAX_MESSAGE_SIZE)));
		grow(&msg_buf, &msg_buf_size, len);
		read_input(msg_buf, len, false);
		c.p = msg_buf;
		c.left = len;

		MemoryContextSwitchTo(request_context);
		PG_TRY();
		{
			/* A cancel becomes this request's error; a kill is FATAL. */
			CHECK_FOR_INTERRUPTS();
			if (type == MSG_REDO)
				handle_redo(&c, page.data);
			else if (type == MSG_MASK)
				handle_mask(&c, page.data);
			else
				ereport(ERROR,
						(errcode(ERRCODE_PROTOCOL_VIOLATION),
						 errmsg("unknown walredo message type 0x%02x",
								(unsigned char) type)));
			InRecovery = false;
			MemoryContextSwitchTo(TopMemoryContext);
			write_reply(MSG_PAGE, page.data, BLCKSZ);
		}
		PG_CATCH();
		{
			ErrorData  *edata;

			InRecovery = false;
			MemoryContextSwitchTo(request_context);
			edata = CopyErrorData();
			FlushErrorState();

			RollbackAndReleaseCurrentSubTransaction();
			BeginInternalSubTransaction(NULL);
			DropDatabaseBuffers(SCRATCH_DB_OID);
			MemoryContextSwitchTo(TopMemoryContext);

			if (edata->message == NULL)
				edata->message = pstrdup("error without a message");
			write_reply(MSG_ERROR, edata->message, strlen(edata->message));
		}
		PG_END_TRY();

		MemoryContextReset(request_context);
	}
}

/*
 * handle_redo rebuilds one page; see the protocol at the top of the file.
 */
static void
handle_redo(Cursor *c, char *page_out)
{
	Target		target;
	RelFileNode scratch = scratch_rnode(TARGET_RELNODE);
	uint8		fork;
	uint8		flags;
	const char *base = NULL;
	uint32		nrecords;
	Buffer		buf;
	bool		target_new;
	XLogRecPtr	prev_lsn = InvalidXLogRecPtr;

	target.rnode.spcNode = take_u32(c);
	target.rnode.dbNode = take_u32(c);
	target.rnode.relNode = take_u32(c);
	fork = take_u8(c);
	target.blkno = take_u32(c);
	if (fork > MAX_FORKNUM)
		ereport(ERROR, (errcode(ERRCODE_PROTOCOL_VIOLATION),
						errmsg("invalid fork number %u", fork)));
	if (target.blkno == P_NEW)
		ereport(ERROR, (errcode(ERRCODE_PROTOCOL_VIOLATION),
						errmsg("invalid block number %u", target.blkno)));
	target.fork = (ForkNumber) fork;
	flags = take_u8(c);
	if (flags & REDO_FLAG_HAS_BASE)
		base = take(c, BLCKSZ);
	nrecords = take_u32(c);

	/*
	 * From here to the end of the request: smgrnblocks() answers from its
	 * cache only in recovery, and redo functions expect it.
	 */
	InRecovery = true;

	buf = install_page(scratch, scratch_fork(target.fork), target.blkno,
					   base ? base : zero_page.data);
	target_new = PageIsNew(base ? base : zero_page.data);

	for (uint32 i = 0; i < nrecords; i++)
	{
		XLogRecPtr	lsn = take_u64(c);
		uint32		len = take_u32(c);
		const char *raw = take(c, len);

		if (lsn <= prev_lsn)
			ereport(ERROR,
					(errcode(ERRCODE_PROTOCOL_VIOLATION),
					 errmsg("record %u of the request ends at %X/%X, not after the previous one at %X/%X",
							i, LSN_FORMAT_ARGS(lsn), LSN_FORMAT_ARGS(prev_lsn))));
		prev_lsn = lsn;
		redo_record(&target, raw, len, lsn, buf, &target_new);
	}
	if (c->left != 0)
		ereport(ERROR, (errcode(ERRCODE_PROTOCOL_VIOLATION),
						errmsg("%zu stray bytes after the records of a redo request",
							   c->left)));

	buf = ReadBufferWithoutRelcache(scratch, scratch_fork(target.fork),
									target.blkno, RBM_NORMAL, NULL, false);
	LockBuffer(buf, BUFFER_LOCK_SHARE);
	memcpy(page_out, BufferGetPage(buf), BLCKSZ);
	UnlockReleaseBuffer(buf);

	DropDatabaseBuffers(SCRATCH_DB_OID);

	/*
	 * A target that was a new (all-zero) page when a record read it is
	 * remembered as an "invalid page" by the redo machinery; forget it (a
	 * no-op when nothing was remembered).
	 */
	XLogDropRelation(scratch, scratch_fork(target.fork));
}

/*
 * redo_record replays one record onto the target, which must be among its
 * block references.
 */
static void
redo_record(const Target *target, const char *raw, uint32 len,
			XLogRecPtr lsn, Buffer target_buf, bool *target_new)
{
	XLogRecord *rec;
	DecodedXLogRecord *decoded;
	char	   *decode_error = NULL;
	bool		found = false;
	bool		initializes = false;
	bool		used_other[XLR_MAX_BLOCK_ID + 1] = {0};

	if (len < SizeOfXLogRecord)
		ereport(ERROR, (errcode(ERRCODE_DATA_CORRUPTED),
						errmsg("record ending at %X/%X is %u bytes, shorter than a record header",
							   LSN_FORMAT_ARGS(lsn), len)));
	rec = grow(&rec_buf, &rec_buf_size, len);
	memcpy(rec, raw, len);
	if (rec->xl_tot_len != len)
		ereport(ERROR, (errcode(ERRCODE_DATA_CORRUPTED),
						errmsg("record ending at %X/%X has xl_tot_len %u but %u bytes were sent",
							   LSN_FORMAT_ARGS(lsn), rec->xl_tot_len, len)));
	check_rmgr(rec, lsn);

	decoded = grow(&decode_buf, &decode_buf_size,
				   DecodeXLogRecordRequiredSpace(len));
	decoded->oversized = false;
	if (!DecodeXLogRecord(reader, decoded, rec, lsn, &decode_error))
		ereport(ERROR, (errcode(ERRCODE_DATA_CORRUPTED),
						errmsg("could not decode record ending at %X/%X: %s",
							   LSN_FORMAT_ARGS(lsn), decode_error ? decode_error : "unknown error")));
	decoded->next_lsn = lsn;

	for (int id = 0; id <= decoded->max_block_id; id++)
	{
		DecodedBkpBlock *blk = &decoded->blocks[id];

		if (!blk->in_use)
			continue;
		if (blk->forknum > MAX_FORKNUM || blk->blkno == P_NEW)
			ereport(ERROR, (errcode(ERRCODE_DATA_CORRUPTED),
							errmsg("record ending at %X/%X: block %d has fork %d, block %u",
								   LSN_FORMAT_ARGS(lsn), id, blk->forknum, blk->blkno)));
		if (RelFileNodeEquals(blk->rnode, target->rnode) &&
			blk->forknum == target->fork && blk->blkno == target->blkno)
		{
			blk->rnode = scratch_rnode(TARGET_RELNODE);
			blk->forknum = scratch_fork(blk->forknum);
			blk->prefetch_buffer = target_buf;
			found = true;
			initializes = blk->apply_image || (blk->flags & BKPBLOCK_WILL_INIT);
		}
		else
		{
			blk->rnode = scratch_rnode(OTHER_RELNODE_BASE + id);
			blk->forknum = scratch_fork(blk->forknum);
			blk->prefetch_buffer = install_page(blk->rnode, blk->forknum,
												blk->blkno, NULL);
			used_other[id] = true;
		}
	}
	if (!found)
		ereport(ERROR,
				(errcode(ERRCODE_PROTOCOL_VIOLATION),
				 errmsg("record ending at %X/%X does not reference the target block %u/%u/%u fork %d block %u",
						LSN_FORMAT_ARGS(lsn), target->rnode.spcNode,
						target->rnode.dbNode, target->rnode.relNode,
						target->fork, target->blkno)));

	reader->record = decoded;
	reader->ReadRecPtr = InvalidXLogRecPtr;
	reader->EndRecPtr = lsn;
	RmgrTable[rec->xl_rmid].rm_redo(reader);
	reader->record = NULL;

	/*
	 * The other blocks' pages are dirty and must not pile up in the small
	 * buffer pool over a long request.
	 */
	drop_other_pages(used_other);

	/*
	 * Redo skips a block whose page is new (all zeros) unless the record
	 * initializes it, as PostgreSQL does for pages of dropped relations:
	 * here that means the history sent lacks the page's earlier contents,
	 * and the page returned would be wrong.
	 */
	if (*target_new)
	{
		Buffer		buf = ReadBufferWithoutRelcache(scratch_rnode(TARGET_RELNODE),
													scratch_fork(target->fork),
													target->blkno,
													RBM_NORMAL, NULL, false);

		*target_new = PageIsNew(BufferGetPage(buf));
		ReleaseBuffer(buf);
		if (*target_new && !initializes)
			ereport(ERROR,
					(errcode(ERRCODE_DATA_CORRUPTED),
					 errmsg("record ending at %X/%X needs the earlier contents of the target page, which is new: no base image or initializing record before it",
							LSN_FORMAT_ARGS(lsn))));
	}
}

/*
 * check_rmgr accepts only records that change relation pages through block
 * references. Anything else (checkpoints, database creation, CLOG...) would
 * change the scratch cluster itself.
 */
static void
check_rmgr(const XLogRecord *rec, XLogRecPtr lsn)
{
	uint8		info = rec->xl_info & ~XLR_INFO_MASK;

	switch (rec->xl_rmid)
	{
		case RM_XLOG_ID:
			if (info == XLOG_FPI || info == XLOG_FPI_FOR_HINT)
				return;
			break;
		case RM_HEAP2_ID:
			if ((info & XLOG_HEAP_OPMASK) != XLOG_HEAP2_REWRITE)
				return;
			break;
		case RM_HEAP_ID:
		case RM_BTREE_ID:
		case RM_HASH_ID:
		case RM_GIN_ID:
		case RM_GIST_ID:
		case RM_SEQ_ID:
		case RM_SPGIST_ID:
		case RM_BRIN_ID:
		case RM_GENERIC_ID:
			return;
		default:
			break;
	}
	ereport(ERROR,
			(errcode(ERRCODE_PROTOCOL_VIOLATION),
			 errmsg("record ending at %X/%X (resource manager %u, info 0x%02X) does not change relation pages",
					LSN_FORMAT_ARGS(lsn), rec->xl_rmid, rec->xl_info)));
}

/*
 * handle_mask applies a resource manager's rm_mask to a page.
 */
static void
handle_mask(Cursor *c, char *page_out)
{
	uint8		rmid = take_u8(c);
	BlockNumber blkno = take_u32(c);
	const char *page = take(c, BLCKSZ);

	if (c->left != 0)
		ereport(ERROR, (errcode(ERRCODE_PROTOCOL_VIOLATION),
						errmsg("%zu stray bytes after a mask request", c->left)));
	if (!RmgrIdExists(rmid) || RmgrTable[rmid].rm_mask == NULL)
		ereport(ERROR, (errcode(ERRCODE_INVALID_PARAMETER_VALUE),
						errmsg("resource manager %u has no mask function", rmid)));
	memcpy(page_out, page, BLCKSZ);
	RmgrTable[rmid].rm_mask(page_out, blkno);
}

static RelFileNode
scratch_rnode(Oid relnode)
{
	RelFileNode rnode;

	rnode.spcNode = DEFAULTTABLESPACE_OID;
	rnode.dbNode = SCRATCH_DB_OID;
	rnode.relNode = relnode;
	return rnode;
}

/*
 * scratch_fork is the fork of a scratch relation that stands for fork: the
 * main fork for an init fork (see HOW REDO RUNS HERE), fork itself
 * otherwise.
 */
static ForkNumber
scratch_fork(ForkNumber fork)
{
	return fork == INIT_FORKNUM ? MAIN_FORKNUM : fork;
}

/*
 * install_page puts a page into the buffer pool: the image given, or (NULL)
 * an empty page with the highest LSN, which redo treats as already replayed.
 * It returns the (unpinned) buffer as a hint for the redo functions' reads.
 *
 * The buffer is non-permanent: if the pool ever had to evict it, it is
 * written to the scratch file without flushing the scratch cluster's WAL up
 * to its (foreign) LSN.
 */
static Buffer
install_page(RelFileNode rnode, ForkNumber fork, BlockNumber blkno,
			 const char *image)
{
	SMgrRelation smgr = smgropen(rnode, InvalidBackendId);
	Buffer		buf;
	Page		page;

	/*
	 * Redo reads of a block past the end of the file would extend it page by
	 * page; write only the block itself, leaving a hole before it.
	 */
	smgrcreate(smgr, fork, true);
	if (smgrnblocks(smgr, fork) <= blkno)
	{
		smgrextend(smgr, fork, blkno, zero_page.data, true);
		(void) smgrnblocks(smgr, fork);
	}

	buf = ReadBufferWithoutRelcache(rnode, fork, blkno, RBM_ZERO_AND_LOCK,
									NULL, false);
	page = BufferGetPage(buf);
	if (image != NULL)
		memcpy(page, image, BLCKSZ);
	else
	{
		PageInit(page, BLCKSZ, 0);
		PageSetLSN(page, PG_UINT64_MAX);
	}
	MarkBufferDirty(buf);
	UnlockReleaseBuffer(buf);
	return buf;
}

static void
drop_other_pages(bool *used)
{
	static ForkNumber forks[] = {MAIN_FORKNUM, FSM_FORKNUM, VISIBILITYMAP_FORKNUM};
	static BlockNumber from[] = {0, 0, 0};

	for (int id = 0; id <= XLR_MAX_BLOCK_ID; id++)
	{
		if (used[id])
			DropRelFileNodeBuffers(smgropen(scratch_rnode(OTHER_RELNODE_BASE + id),
											InvalidBackendId),
								   forks, lengthof(forks), from);
	}
}

/*
 * read_input fills dst with n bytes of stdin. At a clean end of input before
 * the first byte it returns false if eof_ok; any other short read is FATAL.
 */
static bool
read_input(char *dst, size_t n, bool eof_ok)
{
	size_t		done = 0;

	while (done < n)
	{
		ssize_t		r;

		if (in_pos < in_len)
		{
			size_t		k = Min(in_len - in_pos, n - done);

			memcpy(dst + done, in_buf + in_pos, k);
			in_pos += k;
			done += k;
			continue;
		}
		/* Large bodies go straight to their destination. */
		if (n - done >= IN_BUF_SIZE)
			r = read(STDIN_FILENO, dst + done, n - done);
		else
			r = read(STDIN_FILENO, in_buf, IN_BUF_SIZE);
		if (r < 0)
		{
			if (errno == EINTR)
				continue;
			ereport(FATAL, (errcode_for_file_access(),
							errmsg("could not read walredo request: %m")));
		}
		if (r == 0)
		{
			if (done == 0 && eof_ok)
				return false;
			ereport(FATAL, (errcode(ERRCODE_PROTOCOL_VIOLATION),
							errmsg("walredo request cut short: end of input after %zu of %zu bytes",
								   done, n)));
		}
		if (n - done >= IN_BUF_SIZE)
			done += r;
		else
		{
			in_len = r;
			in_pos = 0;
		}
	}
	return true;
}

/*
 * write_reply sends one reply frame, or with type 0 the READY line.
 */
static void
write_reply(char type, const char *body, uint32 len)
{
	char		header[MSG_HEADER_SIZE];
	struct iovec iov[2];
	int			niov = 0;
	size_t		total = 0;

	if (type == 0)
	{
		iov[niov].iov_base = ready_line;
		iov[niov++].iov_len = strlen(ready_line);
		total = strlen(ready_line);
	}
	else
	{
		header[0] = type;
		memcpy(header + 1, &len, sizeof(len));
		iov[niov].iov_base = header;
		iov[niov++].iov_len = MSG_HEADER_SIZE;
		iov[niov].iov_base = unconstify(char *, body);
		iov[niov++].iov_len = len;
		total = MSG_HEADER_SIZE + len;
	}

	while (total > 0)
	{
		ssize_t		w = writev(reply_fd, iov, niov);

		if (w < 0)
		{
			if (errno == EINTR)
				continue;
			ereport(FATAL, (errcode_for_file_access(),
							errmsg("could not write walredo reply: %m")));
		}
		total -= w;
		/* Skip what was written. */
		for (int i = 0; i < niov && w > 0; i++)
		{
			size_t		k = Min((size_t) w, iov[i].iov_len);

			iov[i].iov_base = (char *) iov[i].iov_base + k;
			iov[i].iov_len -= k;
			w -= k;
		}
	}
}

/*
 * grow makes *buf (MAXALIGNed, in TopMemoryContext) at least need bytes.
 */
static void *
grow(char **buf, size_t *size, size_t need)
{
	if (*size < need)
	{
		size_t		n = Max(need, Max(*size * 2, (size_t) 16384));

		if (*buf)
			pfree(*buf);
		*buf = MemoryContextAllocHuge(TopMemoryContext, n);
		*size = n;
	}
	return *buf;
}

static const char *
take(Cursor *c, size_t n)
{
	const char *p = c->p;

	if (c->left < n)
		ereport(ERROR, (errcode(ERRCODE_PROTOCOL_VIOLATION),
						errmsg("walredo request too short: wanted %zu more bytes, %zu left",
							   n, c->left)));
	c->p += n;
	c->left -= n;
	return p;
}

static uint8
take_u8(Cursor *c)
{
	return (uint8) *take(c, 1);
}

static uint32
take_u32(Cursor *c)
{
	uint32		v;

	memcpy(&v, take(c, sizeof(v)), sizeof(v));
	return v;
}

static uint64
take_u64(Cursor *c)
{
	uint64		v;

	memcpy(&v, take(c, sizeof(v)), sizeof(v));
	return v;
}
