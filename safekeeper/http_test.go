package safekeeper

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestMemoryReported reads the safekeeper's memory as zenith status and a
// Prometheus scrape do: GET /v1/memory and safekeeper_memory_bytes.
func TestMemoryReported(t *testing.T) {
	ts := newTestSet(t, 1)
	srv := httptest.NewServer(ts.open(0).httpHandler())
	defer srv.Close()

	resp, err := http.Get(srv.URL + "/v1/memory")
	if err != nil {
		t.Fatal(err)
	}
	var m Memory
	err = json.NewDecoder(resp.Body).Decode(&m)
	resp.Body.Close()
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET /v1/memory: %s %v", resp.Status, err)
	}
	if m.RSSBytes <= 0 || m.GoHeapBytes <= 0 || m.GoRuntimeBytes < m.GoHeapBytes {
		t.Errorf("GET /v1/memory = %+v, want RSS and a Go heap within what the runtime holds", m)
	}

	resp, err = http.Get(srv.URL + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	body := string(b)
	for _, kind := range []string{"rss", "go_heap", "go_runtime"} {
		if want := `safekeeper_memory_bytes{kind="` + kind + `"} `; !strings.Contains(body, want) {
			t.Errorf("/metrics has no %s sample", want)
		}
	}
}

// TestStatusStreamSendsChanges reads a safekeeper's status stream as a
// peer does: the first status at once, then a change of a timeline's
// state (a page server generation announced) without asking again.
func TestStatusStreamSendsChanges(t *testing.T) {
	ts := newTestSet(t, 1)
	sk := ts.open(0)
	tl, err := sk.Timeline(ts.tenant, ts.timeline, true)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(sk.httpHandler())
	defer srv.Close()
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	got := make(chan []TimelineState, 100)
	ended := make(chan error, 1)
	go func() {
		ended <- sk.readStatusStream(ctx, srv.Client(), strings.TrimPrefix(srv.URL, "http://"), func(st []TimelineState) {
			select {
			case got <- st:
			default:
			}
		})
	}()
	wait := func(what string, ok func([]TimelineState) bool) {
		t.Helper()
		for {
			select {
			case st := <-got:
				if ok(st) {
					return
				}
			case err := <-ended:
				t.Fatalf("the stream ended before %s: %v", what, err)
			case <-ctx.Done():
				t.Fatalf("no status with %s", what)
			}
		}
	}
	wait("the timeline", func(st []TimelineState) bool {
		return len(st) == 1 && st[0].Timeline == ts.timeline && st[0].PageserverGeneration == 0
	})
	if _, err := tl.AnnouncePageserverGeneration(7); err != nil {
		t.Fatal(err)
	}
	wait("generation 7", func(st []TimelineState) bool { return len(st) == 1 && st[0].PageserverGeneration == 7 })
	cancel()
	if err := <-ended; !errors.Is(err, context.Canceled) {
		t.Errorf("the stream ended with %v, want the reader's cancel", err)
	}
}
