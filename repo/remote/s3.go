package remote

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	"github.com/aws/aws-sdk-go-v2/aws/retry"
	awshttp "github.com/aws/aws-sdk-go-v2/aws/transport/http"
	"github.com/aws/aws-sdk-go-v2/config"
	"github.com/aws/aws-sdk-go-v2/service/s3"
	"github.com/aws/aws-sdk-go-v2/service/s3/types"
)

// S3Options configures an S3 storage; zero values take the defaults.
type S3Options struct {
	// Endpoint is the S3 service's URL (an S3-compatible server); empty:
	// AWS_ENDPOINT_URL, or AWS itself.
	Endpoint string
	// Region is the bucket's region; empty: AWS_REGION, or us-east-1
	// (which S3-compatible servers ignore).
	Region string
	// PartSize is the size of the parts of a multipart upload; an object
	// smaller than it is uploaded in one request. Default 16 MiB, at
	// least 5 MiB (S3's minimum part).
	PartSize int64
	// RequestTimeout bounds one HTTP request (one attempt). Default 2
	// minutes.
	RequestTimeout time.Duration
	// MaxAttempts is how many times a failed request is tried, with
	// exponential backoff and jitter in between. Default 8.
	MaxAttempts int
}

// S3 is a Storage in a bucket of an S3-compatible object store, under a
// key prefix. Uploads are single PUTs, or multipart uploads for objects
// of more than one part (so an object appears whole or not at all); every
// request and part carries a CRC32C that the server checks, and downloads
// of single-part objects are checked against the CRC32C the server stored. Credentials come from
// the standard AWS sources (AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY,
// the shared config files, ...).
type S3 struct {
	client   *s3.Client
	bucket   string
	prefix   string // "" or ending in "/"
	partSize int64
}

// NewS3 returns the storage in bucket under prefix.
func NewS3(ctx context.Context, bucket, prefix string, o S3Options) (*S3, error) {
	if o.PartSize == 0 {
		o.PartSize = 16 << 20
	}
	if o.PartSize < 5<<20 {
		return nil, fmt.Errorf("s3 part size %d: want at least 5 MiB", o.PartSize)
	}
	if o.RequestTimeout == 0 {
		o.RequestTimeout = 2 * time.Minute
	}
	if o.MaxAttempts == 0 {
		o.MaxAttempts = 8
	}
	opts := []func(*config.LoadOptions) error{
		config.WithRetryer(func() aws.Retryer {
			return retry.NewStandard(func(so *retry.StandardOptions) {
				so.MaxAttempts = o.MaxAttempts
				so.MaxBackoff = 10 * time.Second
			})
		}),
		config.WithHTTPClient(awshttp.NewBuildableClient().WithTimeout(o.RequestTimeout)),
	}
	if o.Region != "" {
		opts = append(opts, config.WithRegion(o.Region))
	}
	cfg, err := config.LoadDefaultConfig(ctx, opts...)
	if err != nil {
		return nil, fmt.Errorf("s3 configuration: %w", err)
	}
	if cfg.Region == "" {
		cfg.Region = "us-east-1"
	}
	client := s3.NewFromConfig(cfg, func(so *s3.Options) {
		if o.Endpoint != "" {
			so.BaseEndpoint = aws.String(o.Endpoint)
		}
		// S3-compatible servers are addressed by path, not by a
		// bucket subdomain.
		so.UsePathStyle = so.BaseEndpoint != nil
		// A multipart object's checksum is of its parts, which a
		// download cannot check; the repository checks every layer
		// against the CRC32C in its index instead.
		so.DisableLogOutputChecksumValidationSkipped = true
	})
	if prefix != "" && !strings.HasSuffix(prefix, "/") {
		prefix += "/"
	}
	return &S3{client: client, bucket: bucket, prefix: prefix, partSize: o.PartSize}, nil
}

func (s *S3) key(p string) string { return s.prefix + p }

// Upload implements Storage.
func (s *S3) Upload(ctx context.Context, p string, r io.Reader) error {
	if err := checkPath(p); err != nil {
		return err
	}
	// A seekable body of known size below a part goes up as it is:
	// the SDK rewinds it to retry.
	if rs, ok := r.(io.ReadSeeker); ok {
		size, err := rs.Seek(0, io.SeekEnd)
		if err == nil {
			_, err = rs.Seek(0, io.SeekStart)
		}
		if err != nil {
			return fmt.Errorf("upload %s: %w", p, err)
		}
		if size < s.partSize {
			return s.put(ctx, p, rs, size)
		}
	}
	buf := make([]byte, s.partSize)
	n, err := io.ReadFull(r, buf)
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		return s.put(ctx, p, bytes.NewReader(buf[:n]), int64(n))
	}
	if err != nil {
		return fmt.Errorf("upload %s: %w", p, err)
	}
	if err := s.multipart(ctx, p, buf[:n], r); err != nil {
		return fmt.Errorf("upload %s: %w", p, err)
	}
	return nil
}

// put uploads the object at p in one request.
func (s *S3) put(ctx context.Context, p string, body io.ReadSeeker, size int64) error {
	_, err := s.client.PutObject(ctx, &s3.PutObjectInput{
		Bucket: &s.bucket, Key: aws.String(s.key(p)),
		Body: body, ContentLength: aws.Int64(size),
		ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c,
	})
	if err != nil {
		return fmt.Errorf("upload %s: %w", p, err)
	}
	return nil
}

// multipart uploads first and then the rest of r in parts.
func (s *S3) multipart(ctx context.Context, p string, first []byte, r io.Reader) error {
	mu, err := s.client.CreateMultipartUpload(ctx, &s3.CreateMultipartUploadInput{
		Bucket: &s.bucket, Key: aws.String(s.key(p)), ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c,
	})
	if err != nil {
		return err
	}
	var parts []types.CompletedPart
	err = func() error {
		buf := first
		for num := int32(1); ; num++ {
			out, err := s.client.UploadPart(ctx, &s3.UploadPartInput{
				Bucket: &s.bucket, Key: aws.String(s.key(p)), UploadId: mu.UploadId, PartNumber: aws.Int32(num),
				Body: bytes.NewReader(buf), ContentLength: aws.Int64(int64(len(buf))),
				ChecksumAlgorithm: types.ChecksumAlgorithmCrc32c,
			})
			if err != nil {
				return fmt.Errorf("part %d: %w", num, err)
			}
			parts = append(parts, types.CompletedPart{ETag: out.ETag, PartNumber: aws.Int32(num), ChecksumCRC32C: out.ChecksumCRC32C})
			if len(buf) < int(s.partSize) {
				return nil
			}
			next := make([]byte, s.partSize)
			n, err := io.ReadFull(r, next)
			if errors.Is(err, io.EOF) {
				return nil
			}
			if err != nil && !errors.Is(err, io.ErrUnexpectedEOF) {
				return err
			}
			buf = next[:n]
		}
	}()
	if err == nil {
		_, err = s.client.CompleteMultipartUpload(ctx, &s3.CompleteMultipartUploadInput{
			Bucket: &s.bucket, Key: aws.String(s.key(p)), UploadId: mu.UploadId,
			MultipartUpload: &types.CompletedMultipartUpload{Parts: parts},
		})
	}
	if err != nil {
		// Not under ctx, which may be what ended: parts left behind
		// cost storage until the bucket's lifecycle removes them.
		actx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_, _ = s.client.AbortMultipartUpload(actx, &s3.AbortMultipartUploadInput{Bucket: &s.bucket, Key: aws.String(s.key(p)), UploadId: mu.UploadId})
	}
	return err
}

// Download implements Storage.
func (s *S3) Download(ctx context.Context, p string, w io.Writer) error {
	if err := checkPath(p); err != nil {
		return err
	}
	out, err := s.client.GetObject(ctx, &s3.GetObjectInput{
		Bucket: &s.bucket, Key: aws.String(s.key(p)), ChecksumMode: types.ChecksumModeEnabled,
	})
	var nsk *types.NoSuchKey
	if errors.As(err, &nsk) {
		return fmt.Errorf("download %s: %w", p, ErrNotFound)
	}
	if err != nil {
		return fmt.Errorf("download %s: %w", p, err)
	}
	defer out.Body.Close()
	n, err := io.Copy(w, out.Body)
	if err == nil && out.ContentLength != nil && n != *out.ContentLength {
		err = fmt.Errorf("got %d bytes of %d", n, *out.ContentLength)
	}
	if err != nil {
		return fmt.Errorf("download %s: %w", p, err)
	}
	return nil
}

// List implements Storage.
func (s *S3) List(ctx context.Context, prefix string) ([]string, error) {
	var out []string
	pages := s3.NewListObjectsV2Paginator(s.client, &s3.ListObjectsV2Input{Bucket: &s.bucket, Prefix: aws.String(s.key(prefix))})
	for pages.HasMorePages() {
		page, err := pages.NextPage(ctx)
		if err != nil {
			return nil, fmt.Errorf("list %q: %w", prefix, err)
		}
		for _, o := range page.Contents {
			if o.Key != nil {
				out = append(out, strings.TrimPrefix(*o.Key, s.prefix))
			}
		}
	}
	sort.Strings(out)
	return out, nil
}

// Delete implements Storage.
func (s *S3) Delete(ctx context.Context, p string) error {
	if err := checkPath(p); err != nil {
		return err
	}
	if _, err := s.client.DeleteObject(ctx, &s3.DeleteObjectInput{Bucket: &s.bucket, Key: aws.String(s.key(p))}); err != nil {
		return fmt.Errorf("delete %s: %w", p, err)
	}
	return nil
}
