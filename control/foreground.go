package control

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"syscall"
	"time"

	"github.com/oklog/run"
	"github.com/rs/zerolog"
)

// What `zenith pageserver run` and `zenith safekeeper run` share: a
// server in the foreground on a libpq and an HTTP listener, stopped by
// SIGINT or SIGTERM.

// daemonLogger logs to stderr as JSON, or for a person when format is
// "console".
func daemonLogger(format string) zerolog.Logger {
	if format == "console" {
		return zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, TimeFormat: time.DateTime}).Level(zerolog.InfoLevel).With().Timestamp().Logger()
	}
	return zerolog.New(os.Stderr).Level(zerolog.InfoLevel).With().Timestamp().Logger()
}

// listenPGAndHTTP opens a server's libpq and HTTP listeners; when it
// fails, neither is left open.
func listenPGAndHTTP(ctx context.Context, pgAddr, httpAddr string) (pgLn, httpLn net.Listener, err error) {
	var lc net.ListenConfig
	pgLn, err = lc.Listen(ctx, "tcp", pgAddr)
	if err != nil {
		return nil, nil, fmt.Errorf("libpq listener: %w", err)
	}
	httpLn, err = lc.Listen(ctx, "tcp", httpAddr)
	if err != nil {
		pgLn.Close()
		return nil, nil, fmt.Errorf("HTTP listener: %w", err)
	}
	return pgLn, httpLn, nil
}

// runUntilSignal runs serve, in one oklog/run group with a handler of
// SIGINT and SIGTERM that cancels serve's context, then closes what serve
// served (close may be nil). A signal is no error: it is logged, with the
// uptime, as why the server stopped, unless close failed.
func runUntilSignal(log zerolog.Logger, serve func(ctx context.Context) error, close func() error) error {
	var g run.Group
	{
		ctx, cancel := context.WithCancel(context.Background())
		g.Add(func() error {
			return serve(ctx)
		}, func(error) {
			cancel()
		})
	}
	g.Add(run.SignalHandler(context.Background(), os.Interrupt, syscall.SIGTERM))
	start := time.Now()
	err := g.Run()
	if close != nil {
		if cerr := close(); cerr != nil && (err == nil || errors.Is(err, run.ErrSignal)) {
			return cerr
		}
	}
	if errors.Is(err, run.ErrSignal) {
		log.Info().Str("reason", err.Error()).Dur("uptime", time.Since(start)).Msg("stopped")
		return nil
	}
	return err
}
