package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"path"
	"sort"
	"strings"

	"github.com/minio/minio-go/v7"
	"github.com/minio/minio-go/v7/pkg/credentials"
)

// s3PartSize bounds the memory of an upload: minio-go buffers one part of
// a stream whose reader cannot seek.
const s3PartSize = 16 << 20

// s3Remote stores files as objects named <prefix>/<name> in one bucket,
// addressed path-style (host/bucket/key), which every S3-compatible server
// understands, unlike virtual-host style that needs DNS per bucket.
type s3Remote struct {
	loc      Location
	cli      *minio.Client
	t        Timeouts
	activity *activity
}

// OpenS3 returns a Remote on the bucket of loc. It checks that the bucket
// exists, so that wrong credentials or a wrong bucket show at start.
func OpenS3(ctx context.Context, loc Location, c Credentials, t Timeouts) (Remote, error) {
	tr, err := minio.DefaultTransport(!c.Insecure)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", loc, err)
	}
	tr.ResponseHeaderTimeout = t.Call
	a := &activity{}
	dial := tr.DialContext
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return a.wrap(c), nil
	}
	cli, err := minio.New(loc.Host, &minio.Options{
		Creds:        credentials.NewStaticV4(c.AccessKeyID, c.SecretAccessKey, ""),
		Secure:       !c.Insecure,
		Region:       c.Region,
		BucketLookup: minio.BucketLookupPath,
		Transport:    tr,
		// Retries belong to the caller, which backs off between
		// attempts and records them.
		MaxRetries: 1,
	})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", loc, err)
	}
	r := &s3Remote{loc: loc, cli: cli, t: t, activity: a}
	cctx, cancel := callContext(ctx, t.Call)
	defer cancel()
	ok, err := cli.BucketExists(cctx, loc.Bucket)
	if err != nil {
		return nil, fmt.Errorf("%s: check bucket %s: %w", loc, loc.Bucket, err)
	}
	if !ok {
		return nil, fmt.Errorf("%s: bucket %s does not exist", loc, loc.Bucket)
	}
	return r, nil
}

func (r *s3Remote) String() string { return r.loc.String() }

func (r *s3Remote) Close() error { return nil }

func (r *s3Remote) key(name string) string { return path.Join(r.loc.Prefix, name) }

func (r *s3Remote) Put(ctx context.Context, name string, body io.Reader, size int64) error {
	ctx, w := newWatchdog(ctx, r.t.Idle, r.activity)
	defer w.stop()
	_, err := r.cli.PutObject(ctx, r.loc.Bucket, r.key(name), &progressReader{r: body, w: w}, size, minio.PutObjectOptions{
		PartSize:    s3PartSize,
		ContentType: "application/octet-stream",
	})
	if err != nil {
		return fmt.Errorf("%s: put %s: %w", r.loc, name, causeErr(ctx, err))
	}
	return nil
}

func (r *s3Remote) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	wctx, w := newWatchdog(ctx, r.t.Idle, r.activity)
	obj, err := r.cli.GetObject(wctx, r.loc.Bucket, r.key(name), minio.GetObjectOptions{})
	if err == nil {
		// GetObject is lazy: Stat makes the request, so that a missing
		// object is an error here rather than at the first Read.
		_, err = obj.Stat()
	}
	if err != nil {
		w.stop()
		if obj != nil {
			obj.Close()
		}
		return nil, fmt.Errorf("%s: get %s: %w", r.loc, name, r.notExist(causeErr(wctx, err)))
	}
	return &s3Reader{obj: obj, ctx: wctx, w: w, loc: r.loc, name: name}, nil
}

type s3Reader struct {
	obj  *minio.Object
	ctx  context.Context
	w    *watchdog
	loc  Location
	name string
}

func (s *s3Reader) Read(p []byte) (int, error) {
	n, err := s.obj.Read(p)
	if n > 0 {
		s.w.kick()
	}
	if err != nil && err != io.EOF {
		err = fmt.Errorf("%s: read %s: %w", s.loc, s.name, causeErr(s.ctx, err))
	}
	return n, err
}

func (s *s3Reader) Close() error {
	s.w.stop()
	return s.obj.Close()
}

func (r *s3Remote) Stat(ctx context.Context, name string) (int64, error) {
	ctx, cancel := callContext(ctx, r.t.Call)
	defer cancel()
	info, err := r.cli.StatObject(ctx, r.loc.Bucket, r.key(name), minio.StatObjectOptions{})
	if err != nil {
		return 0, fmt.Errorf("%s: stat %s: %w", r.loc, name, r.notExist(err))
	}
	return info.Size, nil
}

func (r *s3Remote) notExist(err error) error {
	switch minio.ToErrorResponse(err).Code {
	case minio.NoSuchKey, "NotFound":
		return fmt.Errorf("%w (%v)", ErrNotExist, err)
	}
	return err
}

func (r *s3Remote) List(ctx context.Context, dir string) ([]string, error) {
	ctx, cancel := callContext(ctx, r.t.Call)
	defer cancel()
	prefix := strings.TrimPrefix(r.key(dir)+"/", "/")
	var names []string
	for obj := range r.cli.ListObjects(ctx, r.loc.Bucket, minio.ListObjectsOptions{Prefix: prefix}) {
		if obj.Err != nil {
			return nil, fmt.Errorf("%s: list %s: %w", r.loc, dir, obj.Err)
		}
		name := strings.TrimSuffix(strings.TrimPrefix(obj.Key, prefix), "/")
		if name != "" {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	return names, nil
}

func (r *s3Remote) DeleteAll(ctx context.Context, dir string) error {
	ctx, cancel := callContext(ctx, r.t.Call)
	defer cancel()
	prefix := strings.TrimPrefix(r.key(dir)+"/", "/")
	objects := r.cli.ListObjects(ctx, r.loc.Bucket, minio.ListObjectsOptions{Prefix: prefix, Recursive: true})
	var listErr error
	// RemoveObjects reads the keys as the listing produces them; a
	// listing error ends the feed and is reported after.
	feed := make(chan minio.ObjectInfo)
	go func() {
		defer close(feed)
		for obj := range objects {
			if obj.Err != nil {
				listErr = obj.Err
				return
			}
			feed <- obj
		}
	}()
	var errs []error
	for e := range r.cli.RemoveObjects(ctx, r.loc.Bucket, feed, minio.RemoveObjectsOptions{}) {
		errs = append(errs, fmt.Errorf("%s: %w", e.ObjectName, e.Err))
	}
	if listErr != nil {
		errs = append(errs, fmt.Errorf("list: %w", listErr))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("%s: delete %s: %w", r.loc, dir, err)
	}
	return nil
}
