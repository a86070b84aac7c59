package remote

import (
	"context"
	"strings"
	"testing"
)

func TestOpen(t *testing.T) {
	for _, c := range []struct {
		url     string
		want    string // the storage's type, or the error's text
		wantErr bool
	}{
		{"", "<nil>", false},
		{"file:///var/lib/zenith/remote", "*remote.LocalDir", false},
		{"file://localhost/srv/remote", "*remote.LocalDir", false},
		{"file://host/dir", "not host", true},
		{"file://relative/dir", "not host", true},
		{"file:relative", "file:///absolute/path", true},
		{"s3://", "s3://bucket", true},
		{"gs://bucket", "want file:///dir or s3://bucket/prefix", true},
		{"/plain/path", "want file:///dir or s3://bucket/prefix", true},
	} {
		st, err := Open(context.Background(), Config{URL: c.url})
		if c.wantErr {
			if err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), c.url) {
				t.Errorf("Open(%q) error = %v, want one naming the URL and saying %q", c.url, err, c.want)
			}
			continue
		}
		if err != nil {
			t.Errorf("Open(%q): %v", c.url, err)
			continue
		}
		if got := typeName(st); got != c.want {
			t.Errorf("Open(%q) = %s, want %s", c.url, got, c.want)
		}
	}
	if loc, err := parseURL("s3://bucket/a/b/"); err != nil || loc.bucket != "bucket" || loc.path != "a/b" {
		t.Errorf("parseURL(s3://bucket/a/b/) = %+v, %v", loc, err)
	}
}

func typeName(s Storage) string {
	switch s.(type) {
	case nil:
		return "<nil>"
	case *LocalDir:
		return "*remote.LocalDir"
	case *S3:
		return "*remote.S3"
	}
	return "?"
}
