package safekeeper

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
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
