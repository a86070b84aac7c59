package remote_test

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"reflect"
	"testing"

	"github.com/zenithdb/zenith/repo/remote"
	"github.com/zenithdb/zenith/repo/remote/s3test"
)

// TestS3 runs the Storage contract against a real S3 server: small and
// multipart objects, listing under a prefix, a missing object, deletes,
// and uploads that resume after the server is killed and restarted.
func TestS3(t *testing.T) {
	if testing.Short() {
		t.Skip("starts versitygw; skipped in -short mode")
	}
	ctx := context.Background()
	srv := s3test.Start(t, "zenith")
	srv.Setenv(t)
	if st, err := remote.Open(ctx, remote.Config{URL: "s3://zenith/some/prefix"}); err != nil {
		t.Fatal(err)
	} else if _, ok := st.(*remote.S3); !ok {
		t.Fatalf("Open(s3://...) = %T, want *remote.S3", st)
	}
	// Small parts, so that a multipart upload happens; few attempts, so
	// that a dead server fails an upload quickly.
	var st remote.Storage
	st, err := remote.NewS3(ctx, "zenith", "some/prefix", remote.S3Options{PartSize: 5 << 20, MaxAttempts: 2})
	if err != nil {
		t.Fatal(err)
	}
	big := make([]byte, 12<<20+123) // three parts of 5 MiB
	_, _ = rand.Read(big)
	small := []byte("index")
	for p, data := range map[string][]byte{"tenants/a/big": big, "tenants/a/index.json": small, "tenants/b/index.json": small} {
		if err := st.Upload(ctx, p, bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
	}
	for p, want := range map[string][]byte{"tenants/a/big": big, "tenants/a/index.json": small} {
		var buf bytes.Buffer
		if err := st.Download(ctx, p, &buf); err != nil || !bytes.Equal(buf.Bytes(), want) {
			t.Errorf("Download(%s) = %d bytes, %v; want the %d uploaded", p, buf.Len(), err, len(want))
		}
	}
	if got, err := st.List(ctx, "tenants/a/"); err != nil || !reflect.DeepEqual(got, []string{"tenants/a/big", "tenants/a/index.json"}) {
		t.Errorf("List(tenants/a/) = %v, %v", got, err)
	}
	if err := st.Download(ctx, "tenants/c/index.json", &bytes.Buffer{}); !errors.Is(err, remote.ErrNotFound) {
		t.Errorf("Download of a missing object: error = %v, want ErrNotFound", err)
	}
	if err := st.Delete(ctx, "tenants/a/big"); err != nil {
		t.Fatal(err)
	}
	if err := st.Delete(ctx, "tenants/a/big"); err != nil {
		t.Errorf("deleting a missing object: %v", err)
	}
	if got, _ := st.List(ctx, "tenants/"); !reflect.DeepEqual(got, []string{"tenants/a/index.json", "tenants/b/index.json"}) {
		t.Errorf("List after delete = %v", got)
	}

	// The server dies: an upload fails (after its retries) rather than
	// hanging or half-succeeding, and works once the server is back.
	srv.Stop()
	if err := st.Upload(ctx, "tenants/a/late", bytes.NewReader(small)); err == nil {
		t.Fatal("upload to a stopped server succeeded")
	}
	if err := srv.Restart(); err != nil {
		t.Fatal(err)
	}
	if err := st.Upload(ctx, "tenants/a/late", bytes.NewReader(small)); err != nil {
		t.Fatalf("upload after the restart: %v", err)
	}
}
