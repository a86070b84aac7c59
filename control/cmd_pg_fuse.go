package control

import (
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/rs/zerolog"
	"github.com/urfave/cli/v2"

	"github.com/zenithdb/zenith/control/lazyfs"
	"github.com/zenithdb/zenith/pageserver/api"
	"github.com/zenithdb/zenith/repo/id"
)

// pgFuseCommand is `zenith pg fuse`, the process that serves a lazy
// node's data directory. zenith pg start runs one per lazy node, in the
// background, and zenith pg stop stops it after PostgreSQL: one process
// per node, so that the death of one is the crash of one compute (whose
// files it serves) and nothing else, and its memory is the node's.
func pgFuseCommand() *cli.Command {
	return &cli.Command{
		Name:   "fuse",
		Hidden: true,
		Usage:  "serve a lazy compute node's data directory through FUSE (run by zenith pg start)",
		Description: `Mounts the lazy data directory of the compute node in --dir at its pgdata/
and serves it until SIGTERM (which unmounts once PostgreSQL is gone) or
an unmount. Blocks of relation files are fetched from the page server at
--pageserver on first read, over TLS checked against --ca-file and with
the token in --token-file (a token of the node's tenant only, which
zenith pg start writes there) when the repository has them. The page
server is reached once before the mount, so a refused token or an
untrusted certificate stops the start with the reason. zenith pg start
runs this; there is no need to run it by hand. SIGUSR1 logs the process's
memory (resident, Go heap, threads) and writes a heap profile into --dir.`,
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "dir", Required: true, Usage: "the compute node's `DIR`"},
			&cli.StringFlag{Name: "pageserver", Required: true, Usage: "the page service's `HOST:PORT`"},
			&cli.StringFlag{Name: "tenant", Required: true, Usage: "the node's tenant `ID`"},
			&cli.StringFlag{Name: "timeline", Required: true, Usage: "the node's timeline `ID`"},
			&cli.Int64Flag{Name: "cache-bytes", Value: defaultLazyCacheBytes, Usage: "bound on fetched blocks kept on disk, in `BYTES` (0: none)"},
			&cli.DurationFlag{Name: "fetch-timeout", Value: defaultLazyFetchTimeout, Usage: "a fetch that takes longer is an I/O error"},
			&cli.UintFlag{Name: "read-ahead", Value: lazyReadAhead, Usage: "`BLOCKS` a sequential read fetches ahead"},
			&cli.Int64Flag{Name: "prewarm-bytes", Usage: "once PostgreSQL accepts connections, read up to `BYTES` of the relation files in the background, smallest first (0: none)"},
			&cli.Int64Flag{Name: "memory-limit", Value: lazyfs.DefaultMemoryLimit, Usage: "the Go runtime's memory limit, in `BYTES` (unless GOMEMLIMIT is set; 0: none)"},
			&cli.StringFlag{Name: "ca-file", Usage: "speak TLS and check the page server's certificate against the CA in `FILE`"},
			&cli.StringFlag{Name: "token-file", Usage: "present the token in `FILE` (read again for every new connection)"},
		},
		Action: func(c *cli.Context) error {
			if c.NArg() != 0 {
				return fmt.Errorf("pg fuse takes no arguments, only flags")
			}
			began := time.Now()
			dir := c.String("dir")
			memLimit := lazyfs.SetMemoryLimit(c.Int64("memory-limit"))
			// Info, or debug (every fetch) under ZENITH_LOG=debug, as pg
			// start's own log.
			level := zerolog.InfoLevel
			if cliLogger().GetLevel() == zerolog.DebugLevel {
				level = zerolog.DebugLevel
			}
			log := zerolog.New(os.Stderr).Level(level).With().Timestamp().Str("node", filepath.Base(dir)).Logger()
			n := &Node{dir: dir}
			text, err := os.ReadFile(n.lazyManifest())
			if err != nil {
				return err
			}
			m, err := api.ParseLazyManifest(text)
			if err != nil {
				return err
			}
			tenant, err := id.ParseTenantID(c.String("tenant"))
			if err != nil {
				return fmt.Errorf("--tenant: %w", err)
			}
			client, err := lazyfs.NewPageClient(lazyfs.PageClientOptions{
				Addr: c.String("pageserver"), Stream: api.PageStream{Tenant: tenant, Timeline: c.String("timeline")},
				Timeout: c.Duration("fetch-timeout"), CAFile: c.String("ca-file"), TokenFile: c.String("token-file"),
				WaitInThread: true,
			})
			if err != nil {
				return err
			}
			defer client.Close()
			if err := client.Check(c.Context); err != nil {
				return err
			}
			reached := time.Now()
			fsys, err := lazyfs.Mount(lazyfs.Options{
				Backing: n.lazyBacking(), Mountpoint: n.DataDir(), Manifest: m, Client: client,
				CacheBytes: c.Int64("cache-bytes"), ReadAhead: uint32(c.Uint("read-ahead")), PrewarmBytes: c.Int64("prewarm-bytes"), Log: log,
			})
			if err != nil {
				return err
			}
			log.Info().Str("mountpoint", n.DataDir()).Stringer("lsn", m.LSN).Int("files", len(m.Files)).Int64("memory_limit", memLimit).
				Dur("reach_pageserver", reached.Sub(began)).Dur("mount", time.Since(reached)).Msg("serving lazy data directory")
			sigs := make(chan os.Signal, 1)
			signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
			usr1 := make(chan os.Signal, 1)
			signal.Notify(usr1, syscall.SIGUSR1)
			done := make(chan struct{})
			go func() {
				fsys.Wait()
				close(done)
			}()
			for {
				select {
				case <-usr1:
					if err := lazyfs.LogMemory(dir, log); err != nil {
						log.Warn().Err(err).Msg("memory")
					}
				case <-done:
					log.Info().Int64("fetched_blocks", fsys.Fetched()).Int64("fetches", fsys.Fetches()).Int64("getattr_requests", fsys.AttrRequests()).Msg("unmounted")
					return nil
				case <-sigs:
					if err := fsys.Unmount(); err != nil {
						log.Warn().Err(err).Msg("cannot unmount yet (PostgreSQL still runs?): still serving")
						continue
					}
					select {
					case <-done:
					case <-time.After(10 * time.Second):
					}
					log.Info().Int64("fetched_blocks", fsys.Fetched()).Int64("fetches", fsys.Fetches()).Int64("getattr_requests", fsys.AttrRequests()).Msg("unmounted")
					return nil
				}
			}
		},
	}
}
