package remote

import (
	"context"
	"fmt"
	"net/url"
	"path/filepath"
	"strings"

	"github.com/zenithdb/zenith/repo/vfs"
)

// Config says where remote storage is, as the page server's config file
// holds it (the [remote_storage] table).
type Config struct {
	// URL is file:///absolute/dir or s3://bucket/prefix; empty: no
	// remote storage.
	URL string `toml:"url"`
	// Endpoint is an S3-compatible server's URL, for s3:// (empty:
	// AWS_ENDPOINT_URL, or AWS).
	Endpoint string `toml:"endpoint"`
	// Region is the bucket's region, for s3:// (empty: AWS_REGION, or
	// us-east-1).
	Region string `toml:"region"`
}

// Validate checks the URL's form without reaching the storage.
func (c Config) Validate() error {
	_, err := parseURL(c.URL)
	return err
}

// location is a parsed Config.URL.
type location struct {
	scheme, bucket, path string
}

func parseURL(s string) (location, error) {
	if s == "" {
		return location{}, nil
	}
	u, err := url.Parse(s)
	if err != nil {
		return location{}, fmt.Errorf("remote storage url %q: %w", s, err)
	}
	switch u.Scheme {
	case "file":
		if u.Host != "" && u.Host != "localhost" {
			return location{}, fmt.Errorf("remote storage url %q: a file URL names a local directory, file:///absolute/path (not host %q)", s, u.Host)
		}
		if !filepath.IsAbs(u.Path) {
			return location{}, fmt.Errorf("remote storage url %q: want file:///absolute/path", s)
		}
		return location{scheme: "file", path: filepath.Clean(u.Path)}, nil
	case "s3":
		if u.Host == "" {
			return location{}, fmt.Errorf("remote storage url %q: want s3://bucket or s3://bucket/prefix", s)
		}
		return location{scheme: "s3", bucket: u.Host, path: strings.Trim(u.Path, "/")}, nil
	default:
		return location{}, fmt.Errorf("remote storage url %q: want file:///dir or s3://bucket/prefix", s)
	}
}

// Open returns the storage c names: a LocalDir for file://, an S3 for
// s3://; nil for an empty URL.
func Open(ctx context.Context, c Config) (Storage, error) {
	loc, err := parseURL(c.URL)
	if err != nil {
		return nil, err
	}
	switch loc.scheme {
	case "file":
		return NewLocalDir(vfs.Default, loc.path), nil
	case "s3":
		return NewS3(ctx, loc.bucket, loc.path, S3Options{Endpoint: c.Endpoint, Region: c.Region})
	}
	return nil, nil
}
