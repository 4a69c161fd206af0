package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/gitopsd/gitopsd/internal/s3"
)

// s3PartSize bounds the memory of an upload: a body is sent from memory so
// that its sha256 is signed, and one larger than this goes in parts of
// this size, one in memory at a time.
const s3PartSize = 16 << 20

// s3Remote stores files as objects named <prefix>/<name> in one bucket,
// addressed path-style (host/bucket/key), which every S3-compatible server
// understands, unlike virtual-host style that needs DNS per bucket.
type s3Remote struct {
	loc      Location
	cli      *s3.Client
	tr       *http.Transport
	t        Timeouts
	activity *activity
	listPage int // keys a listing asks for at a time; 0 is the server's 1000
}

// OpenS3 returns a Remote on the bucket of loc. It checks that the bucket
// exists, so that wrong credentials or a wrong bucket show at start.
func OpenS3(ctx context.Context, loc Location, c Credentials, t Timeouts) (Remote, error) {
	a := &activity{}
	dialer := &net.Dialer{Timeout: t.Call, KeepAlive: 30 * time.Second}
	tr := &http.Transport{
		Proxy: http.ProxyFromEnvironment,
		DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
			c, err := dialer.DialContext(ctx, network, addr)
			if err != nil {
				return nil, err
			}
			return a.wrap(c), nil
		},
		TLSHandshakeTimeout:   t.Call,
		ResponseHeaderTimeout: t.Call,
		IdleConnTimeout:       90 * time.Second,
		MaxIdleConnsPerHost:   4,
		// A Get's Content-Length must be the object's, not a gzipped reply's.
		DisableCompression: true,
	}
	cli := s3.New(s3.Config{
		Endpoint: loc.Host, Secure: !c.Insecure,
		AccessKey: c.AccessKeyID, SecretKey: c.SecretAccessKey, Region: c.Region,
		Transport: tr,
	})
	r := &s3Remote{loc: loc, cli: cli, tr: tr, t: t, activity: a}
	cctx, cancel := callContext(ctx, t.Call)
	defer cancel()
	if err := cli.HeadBucket(cctx, loc.Bucket); err != nil {
		var e *s3.Error
		if errors.As(err, &e) && e.Code == "NoSuchBucket" {
			return nil, fmt.Errorf("%s: bucket %s does not exist", loc, loc.Bucket)
		}
		return nil, fmt.Errorf("%s: check bucket %s: %w", loc, loc.Bucket, err)
	}
	return r, nil
}

func (r *s3Remote) String() string { return r.loc.String() }

func (r *s3Remote) Close() error {
	r.tr.CloseIdleConnections()
	return nil
}

func (r *s3Remote) key(name string) string { return path.Join(r.loc.Prefix, name) }

func (r *s3Remote) Put(ctx context.Context, name string, body io.Reader, size int64) error {
	ctx, w := newWatchdog(ctx, r.t.Idle, r.activity)
	defer w.stop()
	if err := r.put(ctx, r.key(name), &progressReader{r: body, w: w}, size); err != nil {
		return fmt.Errorf("%s: put %s: %w", r.loc, name, causeErr(ctx, err))
	}
	return nil
}

func (r *s3Remote) put(ctx context.Context, key string, body io.Reader, size int64) error {
	if size <= s3PartSize {
		buf := make([]byte, size)
		if _, err := io.ReadFull(body, buf); err != nil {
			return fmt.Errorf("read the file: %w", err)
		}
		return r.cli.PutObject(ctx, r.loc.Bucket, key, buf)
	}
	id, err := r.cli.CreateMultipartUpload(ctx, r.loc.Bucket, key)
	if err != nil {
		return err
	}
	etags, err := r.putParts(ctx, key, id, body, size)
	if err == nil {
		err = r.cli.CompleteMultipartUpload(ctx, r.loc.Bucket, key, id, etags)
	}
	if err != nil {
		// The parts sent so far are stored, and billed, until aborted;
		// ctx may be what failed, so the abort has its own deadline.
		actx, cancel := callContext(context.WithoutCancel(ctx), r.t.Call)
		defer cancel()
		if aerr := r.cli.AbortMultipartUpload(actx, r.loc.Bucket, key, id); aerr != nil {
			return fmt.Errorf("%w (and the upload's parts were not dropped: %v)", err, aerr)
		}
		return err
	}
	return nil
}

// putParts sends body in parts of s3PartSize through one buffer and
// returns their ETags in order.
func (r *s3Remote) putParts(ctx context.Context, key, id string, body io.Reader, size int64) ([]string, error) {
	buf := make([]byte, s3PartSize)
	var etags []string
	for left := size; left > 0; {
		part := buf[:min(left, s3PartSize)]
		if _, err := io.ReadFull(body, part); err != nil {
			return nil, fmt.Errorf("read the file: %w", err)
		}
		etag, err := r.cli.UploadPart(ctx, r.loc.Bucket, key, id, len(etags)+1, part)
		if err != nil {
			return nil, err
		}
		etags = append(etags, etag)
		left -= int64(len(part))
	}
	return etags, nil
}

func (r *s3Remote) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	wctx, w := newWatchdog(ctx, r.t.Idle, r.activity)
	body, _, err := r.cli.GetObject(wctx, r.loc.Bucket, r.key(name))
	if err != nil {
		w.stop()
		return nil, fmt.Errorf("%s: get %s: %w", r.loc, name, r.notExist(causeErr(wctx, err)))
	}
	return &s3Reader{body: body, ctx: wctx, w: w, loc: r.loc, name: name}, nil
}

type s3Reader struct {
	body io.ReadCloser
	ctx  context.Context
	w    *watchdog
	loc  Location
	name string
}

func (s *s3Reader) Read(p []byte) (int, error) {
	n, err := s.body.Read(p)
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
	return s.body.Close()
}

func (r *s3Remote) Stat(ctx context.Context, name string) (int64, error) {
	ctx, cancel := callContext(ctx, r.t.Call)
	defer cancel()
	size, err := r.cli.HeadObject(ctx, r.loc.Bucket, r.key(name))
	if err != nil {
		return 0, fmt.Errorf("%s: stat %s: %w", r.loc, name, r.notExist(err))
	}
	return size, nil
}

func (r *s3Remote) notExist(err error) error {
	if s3.IsNoSuchKey(err) {
		return fmt.Errorf("%w (%v)", ErrNotExist, err)
	}
	return err
}

// prefixOf is the key prefix of the names under dir.
func (r *s3Remote) prefixOf(dir string) string {
	return strings.TrimPrefix(r.key(dir)+"/", "/")
}

// list calls fn with each page's keys and common prefixes under prefix.
func (r *s3Remote) list(ctx context.Context, prefix, delimiter string, fn func(keys []string)) error {
	q := s3.ListQuery{Prefix: prefix, Delimiter: delimiter, MaxKeys: r.listPage}
	for {
		page, err := r.cli.ListObjectsV2(ctx, r.loc.Bucket, q)
		if err != nil {
			return err
		}
		fn(page.Keys)
		fn(page.Prefixes)
		if page.Next == "" {
			return nil
		}
		q.ContinuationToken = page.Next
	}
}

func (r *s3Remote) List(ctx context.Context, dir string) ([]string, error) {
	ctx, cancel := callContext(ctx, r.t.Call)
	defer cancel()
	prefix := r.prefixOf(dir)
	var names []string
	err := r.list(ctx, prefix, "/", func(keys []string) {
		for _, k := range keys {
			if name := strings.TrimSuffix(strings.TrimPrefix(k, prefix), "/"); name != "" {
				names = append(names, name)
			}
		}
	})
	if err != nil {
		return nil, fmt.Errorf("%s: list %s: %w", r.loc, dir, err)
	}
	sort.Strings(names)
	return names, nil
}

func (r *s3Remote) DeleteAll(ctx context.Context, dir string) error {
	ctx, cancel := callContext(ctx, r.t.Call)
	defer cancel()
	// The whole listing first: deleting between pages could shift what a
	// continuation token points at on some servers.
	var keys []string
	if err := r.list(ctx, r.prefixOf(dir), "", func(k []string) { keys = append(keys, k...) }); err != nil {
		return fmt.Errorf("%s: delete %s: %w", r.loc, dir, err)
	}
	for len(keys) > 0 {
		n := min(len(keys), s3.MaxDeleteKeys)
		if err := r.cli.DeleteObjects(ctx, r.loc.Bucket, keys[:n]); err != nil {
			return fmt.Errorf("%s: delete %s: %w", r.loc, dir, err)
		}
		keys = keys[n:]
	}
	return nil
}
