// Package repo is the page server's repository: durable, versioned storage
// of every page of a PostgreSQL cluster by LSN, for a tree of timelines
// (branches) per tenant (the design's section 4).
//
// A Repository lives in a work directory:
//
//	<workdir>/tenants/<tenant id>/config.toml           the tenant's settings
//	<workdir>/tenants/<tenant id>/timelines/<timeline id>/metadata
//	<workdir>/tenants/<tenant id>/timelines/<timeline id>/<layer files>
//
// Tenants and timelines are loaded at their first use. A timeline takes
// values (Put, then FinishWrite for each ingested WAL record) into an
// in-memory layer, which is frozen at a size or age threshold and flushed
// to a delta layer file; the in-memory layers of all timelines together
// stay within Config.InMemoryLayerLimit (the writer freezes early, and
// flushes itself when the background flush falls behind). Get rebuilds a
// key at an LSN from the newest image and the records after it, found by
// walking layers newest first and continuing in the ancestor timeline
// below the branch point, and replays the records through a Redo.
// Compaction rewrites flushed deltas into key-partitioned ones and writes
// image layers, and once a timeline's ingest is idle, images of the keys
// that have none (a bulk load's, each read of which would otherwise be a
// WAL redo); garbage collection removes layers that no read at or above
// the GC cut-off, nor any child branch's branch point, can need. The
// background loops work on each timeline on a goroutine of its own, so a
// timeline whose disk does not answer holds up its own flushes only
// (Timeline.FlushStalled says so), never another timeline's.
//
// Durability: a layer file is written, fsynced and renamed into place,
// the directory is fsynced, and only then is the timeline's metadata file
// (ancestor, branch point, disk-consistent LSN, previous record LSN, GC
// cut-off, the list of layer files) replaced atomically. After a crash a
// timeline is exactly as of its disk-consistent LSN; the WAL after it must
// be ingested again (from the safekeepers). Files that the metadata does
// not list are leftovers of an interrupted flush or compaction and are
// removed at load. Every file operation goes through the vfs seam.
//
// Deletion: a timeline (without children) or a tenant is deleted by
// renaming its directory to "<id>.deleted", durably; that rename is the
// commit point. A crash before it leaves everything as it was; a crash
// after it leaves a directory that is never loaded again, removed at the
// next listing of the tenants (Tenants) or by the owner of the timeline's other state
// (DeletedTimelines, RemoveDeletedTimeline).
//
// Remote storage (Config.Remote; upload.go, restore.go, generation.go,
// ondemand.go): new layer files and then each timeline's index are
// uploaded; what they cover is the remote-consistent LSN. A tenant is
// attached at a generation (AttachTenant; Neon's RFC 025): object names
// carry it, an attachment reads the newest index at or below its own, and
// remote objects are deleted only while no newer generation's marker is
// published, so a page server holding an older one never damages a newer
// one's state. An attach writes only the timelines' metadata; a layer
// file missing from the local disk is fetched at its first read (the
// layer Env's Fetch), and past Config.LayerDiskBudget the least recently
// read uploaded layers are evicted. DetachTenant uploads everything and
// removes the tenant locally.
//
// The repository must never serve data it cannot vouch for: a corrupt or
// truncated file is a *CorruptionError naming it, never a wrong page.
package repo
