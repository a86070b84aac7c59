package pageserver

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/rs/zerolog"

	"github.com/zenithdb/zenith/pageserver/api"
	"github.com/zenithdb/zenith/pageserver/walingest"
	"github.com/zenithdb/zenith/pageserver/walreceiver"
	"github.com/zenithdb/zenith/repo"
	"github.com/zenithdb/zenith/repo/auth"
	"github.com/zenithdb/zenith/repo/pgdata"
	"github.com/zenithdb/zenith/repo/vfs"
	"github.com/zenithdb/zenith/walredo"
)

// repoRedo is the repository's Redo: relation pages through the WAL redo
// processes, SLRU pages in Go (redo.go).
func repoRedo(m *walredo.Manager) repo.Redo { return NewRedo(m) }

// timelineWALOpener returns what starts the WAL side of a timeline: its
// ingest (which needs the timeline's pg_control, so an imported timeline
// or a branch of one), its raw-WAL store in walDir, and the receiver that
// streams into both from the source the store remembers. fp, if not nil,
// makes the ingest of the records it matches fail (FailIngestEnv); fs
// is the file system of the store (nil: the operating system's).
//
// client is what the receivers present to the safekeepers.
func timelineWALOpener(fp *ingestFailpoint, client auth.ClientOptions, disk *vfs.DiskState, fs vfs.FS) openWALFunc {
	if fs == nil {
		fs = vfs.Default
	}
	return func(ctx context.Context, tl *repo.Timeline, walDir string, log zerolog.Logger) (timelineWAL, error) {
		ing, err := walingest.NewWalIngest(ctx, tl, log)
		if err != nil {
			return nil, err
		}
		store, err := walreceiver.OpenWALStore(fs, walDir, ing.SegSize(), log)
		if err != nil {
			return nil, err
		}
		var in walreceiver.Ingester = ing
		if fp != nil {
			in = failingIngester{Ingester: ing, fp: fp}
		}
		r := walreceiver.NewWalReceiver(tl, in, store, log)
		r.SetClient(client)
		r.SetDiskState(disk)
		return &receiverWAL{WalReceiver: r, store: store}, nil
	}
}

// receiverWAL is a timeline's WalReceiver with its WALStore.
type receiverWAL struct {
	*walreceiver.WalReceiver
	store *walreceiver.WALStore
}

func (w *receiverWAL) Status() api.WALStatus {
	st := w.WalReceiver.Status()
	return api.WALStatus{
		Source: st.Source, Safekeepers: st.Safekeepers, Safekeeper: st.Safekeeper, Connected: st.Connected, LastError: st.LastError,
		Received: st.Received, Flushed: st.Flushed, Ingested: st.Ingested, LastMessage: st.LastMessage,
		DecodeErrors: st.DecodeErrors,
		StoreError:   st.StoreError, StoreErrorSince: st.StoreErrorSince, StoreErrors: st.StoreErrors,
	}
}

func (w *receiverWAL) TrimBelow(lsn pgdata.LSN) error { return w.store.TrimBelow(lsn) }

func (w *receiverWAL) PrevRecord(ctx context.Context, end pgdata.LSN) (pgdata.LSN, error) {
	return w.store.PrevRecord(ctx, end)
}

func (w *receiverWAL) FindLSNForTime(ctx context.Context, t time.Time) (pgdata.LSN, bool, error) {
	lsn, err := w.store.FindLSNForTime(ctx, t)
	switch {
	case errors.Is(err, walreceiver.ErrNoCommitBefore):
		return 0, false, nil
	case err != nil:
		return 0, false, fmt.Errorf("find the LSN of %v: %w", t, err)
	}
	return lsn, true, nil
}

// Close ends the replicas' streams of the store, then closes it.
func (w *receiverWAL) Close() error {
	w.StopSending()
	return w.store.Close()
}
