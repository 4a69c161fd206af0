package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/url"
	"path"
	"strconv"
	"strings"
	"time"
)

// Remote is the handful of file operations a snapshot copy needs from a
// storage server. Names are slash-separated and relative to the remote's
// root (the URL's prefix or path); S3 and SFTP implement it, and the
// snapshot rules (what is uploaded last, when a copy is good) are written
// once, on top of it, in snapshot.go.
type Remote interface {
	// Put stores the size bytes of r under name, replacing what was
	// there. A name appears whole or not at all, never cut short.
	Put(ctx context.Context, name string, r io.Reader, size int64) error
	// Get opens name for reading; the caller closes it. The context
	// bounds the whole read.
	Get(ctx context.Context, name string) (io.ReadCloser, error)
	// Stat returns the size of name; a missing name is an error wrapping
	// ErrNotExist.
	Stat(ctx context.Context, name string) (int64, error)
	// List returns the names of the files and folders directly under
	// dir, sorted; a missing dir is an empty list.
	List(ctx context.Context, dir string) ([]string, error)
	// DeleteAll removes dir and everything under it; a missing dir is
	// not an error.
	DeleteAll(ctx context.Context, dir string) error
	// Close ends the connection.
	Close() error
	// String is the remote's URL without credentials, for logs and errors.
	String() string
}

// ErrNotExist is wrapped by Stat and Get for a name the remote does not have.
var ErrNotExist = errors.New("does not exist on the remote")

// Scheme is the kind of a remote, the scheme of its URL.
type Scheme string

const (
	SchemeS3   Scheme = "s3"
	SchemeSFTP Scheme = "sftp"
)

// Location is a parsed remote URL: s3://host:port/bucket/prefix or
// sftp://user@host:port/path.
type Location struct {
	Scheme Scheme
	// Host is host:port, with the scheme's default port when the URL has none.
	Host string
	// User is the SSH user (SFTP only).
	User string
	// Bucket is the S3 bucket (S3 only).
	Bucket string
	// Prefix is the folder inside the bucket (S3) or on the server (SFTP)
	// that holds the hosts' snapshots; "" is the bucket's root. SFTP
	// paths are relative to the login folder unless they start with "//"
	// (sftp://u@h/abs/path is "abs/path", sftp://u@h//abs/path is "/abs/path").
	Prefix string
}

// String is the location as a URL, which never holds a secret: the URL
// carries none (credentials come from a file).
func (l Location) String() string {
	switch l.Scheme {
	case SchemeS3:
		return "s3://" + path.Join(l.Host, l.Bucket, l.Prefix)
	case SchemeSFTP:
		p := l.Prefix
		if strings.HasPrefix(p, "/") {
			p = "/" + p
		} else if p != "" {
			p = "/" + p
		}
		return "sftp://" + l.User + "@" + l.Host + p
	}
	return string(l.Scheme) + "://" + l.Host
}

// ParseURL checks a remote URL and splits it. Its errors say what is wrong
// without repeating the URL's userinfo, which should not be there anyway.
func ParseURL(raw string) (Location, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return Location{}, errors.New("not a URL such as s3://host:9000/bucket/prefix or sftp://user@host:22/path")
	}
	var l Location
	switch Scheme(u.Scheme) {
	case SchemeS3:
		l.Scheme = SchemeS3
		if u.User != nil {
			return Location{}, errors.New("s3 URL must not hold credentials: put them in credentials_file")
		}
		p := strings.Trim(u.Path, "/")
		bucket, prefix, _ := strings.Cut(p, "/")
		if bucket == "" {
			return Location{}, errors.New("s3 URL needs a bucket: s3://host:port/bucket[/prefix]")
		}
		l.Bucket, l.Prefix = bucket, cleanPrefix(prefix)
		l.Host, err = hostPort(u, "443")
	case SchemeSFTP:
		l.Scheme = SchemeSFTP
		if u.User == nil || u.User.Username() == "" {
			return Location{}, errors.New("sftp URL needs a user: sftp://user@host:port/path")
		}
		if _, has := u.User.Password(); has {
			return Location{}, errors.New("sftp URL must not hold a password: the key comes from credentials_file")
		}
		l.User = u.User.Username()
		p := strings.TrimPrefix(u.Path, "/")
		abs := strings.HasPrefix(p, "/")
		l.Prefix = cleanPrefix(p)
		if abs {
			l.Prefix = "/" + l.Prefix
		}
		l.Host, err = hostPort(u, "22")
	default:
		return Location{}, fmt.Errorf("scheme %q is not supported (s3 or sftp)", u.Scheme)
	}
	if err != nil {
		return Location{}, err
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return Location{}, errors.New("URL must not have a query or fragment")
	}
	return l, nil
}

func hostPort(u *url.URL, defaultPort string) (string, error) {
	host, port := u.Hostname(), u.Port()
	if host == "" {
		return "", errors.New("URL needs a host")
	}
	if port == "" {
		port = defaultPort
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("port %q is not a number from 1 to 65535", port)
	}
	return net.JoinHostPort(host, port), nil
}

func cleanPrefix(p string) string {
	p = strings.Trim(path.Clean("/"+p), "/")
	return p
}

// Timeouts bound every network call: Call for the short ones (a stat, a
// listing, a connection), Idle for a transfer, which may run for an hour
// but must not stall for longer than this.
type Timeouts struct {
	Call time.Duration
	Idle time.Duration
}

// DefaultTimeouts suit a remote across the Internet.
var DefaultTimeouts = Timeouts{Call: 60 * time.Second, Idle: 60 * time.Second}

// Open connects to the remote at rawURL with the credentials in
// credentialsFile.
func Open(ctx context.Context, rawURL, credentialsFile string, t Timeouts) (Remote, error) {
	loc, err := ParseURL(rawURL)
	if err != nil {
		return nil, fmt.Errorf("remote url: %w", err)
	}
	creds, err := ReadCredentials(credentialsFile, loc.Scheme)
	if err != nil {
		return nil, err
	}
	switch loc.Scheme {
	case SchemeS3:
		return OpenS3(ctx, loc, creds, t)
	default:
		return OpenSFTP(ctx, loc, creds, t)
	}
}

// callContext gives ctx a deadline of d unless it has an earlier one, so
// that no call waits forever on a server that went quiet.
func callContext(ctx context.Context, d time.Duration) (context.Context, context.CancelFunc) {
	if dl, ok := ctx.Deadline(); ok && time.Until(dl) < d {
		return context.WithCancel(ctx)
	}
	return context.WithTimeout(ctx, d)
}

// watchdog cancels a transfer that made no progress for idle: a deadline
// on the whole transfer would cut a large upload on a slow line, none at
// all would let a stalled server hang it forever.
type watchdog struct {
	idle   time.Duration
	timer  *time.Timer
	cancel context.CancelCauseFunc
}

// errStalled is the cause of a transfer the watchdog cancelled.
var errStalled = errors.New("the transfer stalled")

func newWatchdog(ctx context.Context, idle time.Duration) (context.Context, *watchdog) {
	ctx, cancel := context.WithCancelCause(ctx)
	w := &watchdog{idle: idle, cancel: cancel}
	w.timer = time.AfterFunc(idle, func() {
		cancel(fmt.Errorf("%w: no progress for %v", errStalled, idle))
	})
	return ctx, w
}

func (w *watchdog) kick() { w.timer.Reset(w.idle) }

func (w *watchdog) stop() {
	w.timer.Stop()
	w.cancel(context.Canceled)
}

// progressReader kicks the watchdog on every read that returns data.
type progressReader struct {
	r io.Reader
	w *watchdog
}

func (p *progressReader) Read(b []byte) (int, error) {
	n, err := p.r.Read(b)
	if n > 0 {
		p.w.kick()
	}
	return n, err
}

// causeErr prefers the watchdog's reason to a bare "context canceled".
func causeErr(ctx context.Context, err error) error {
	if err != nil && ctx.Err() != nil {
		if c := context.Cause(ctx); c != nil && !errors.Is(err, c) {
			return fmt.Errorf("%w (%v)", err, c)
		}
	}
	return err
}
