package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gitopsd/gitopsd/internal/config"
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

// Location is a parsed remote URL; config owns the parsing, so that a bad
// URL stops the daemon at start.
type Location = config.RemoteLocation

// Scheme is the kind of a remote.
type Scheme = config.RemoteScheme

const (
	SchemeS3   = config.RemoteS3
	SchemeSFTP = config.RemoteSFTP
)

// ParseURL checks a remote URL and splits it.
func ParseURL(raw string) (Location, error) { return config.ParseRemoteURL(raw) }

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
// all would let a stalled server hang it forever. Progress is data read
// from the caller's file or the remote's reply (kick), or bytes moving on
// any of the remote's connections (the activity): S3 reads a whole part
// into memory before it sends it, and a slow uplink may take minutes to send it.
type watchdog struct {
	idle     time.Duration
	activity *activity
	last     atomic.Int64 // unix nanoseconds of the last kick
	timer    *time.Timer
	cancel   context.CancelCauseFunc
}

// errStalled is the cause of a transfer the watchdog cancelled.
var errStalled = errors.New("the transfer stalled")

func newWatchdog(ctx context.Context, idle time.Duration, a *activity) (context.Context, *watchdog) {
	ctx, cancel := context.WithCancelCause(ctx)
	w := &watchdog{idle: idle, activity: a, cancel: cancel}
	w.kick()
	// Armed only once w.timer is set, since check resets it.
	w.timer = time.AfterFunc(time.Duration(math.MaxInt64), w.check)
	w.timer.Reset(idle)
	return ctx, w
}

// check runs when idle has passed since it was armed: it cancels if
// nothing moved since, or waits for the rest of idle after the last move.
func (w *watchdog) check() {
	last := w.last.Load()
	if w.activity != nil {
		w.activity.poll()
		last = max(last, w.activity.last.Load())
	}
	if quiet := time.Since(time.Unix(0, last)); quiet < w.idle {
		w.timer.Reset(w.idle - quiet)
		return
	}
	w.cancel(fmt.Errorf("%w: no progress for %v", errStalled, w.idle))
}

func (w *watchdog) kick() { w.last.Store(time.Now().UnixNano()) }

func (w *watchdog) stop() {
	w.timer.Stop()
	w.cancel(context.Canceled)
}

// activity is when bytes last moved on any connection of a remote. A
// write returns once the kernel took the bytes, and its send buffer may
// hold megabytes that drain for minutes on a slow uplink, while the
// program sees nothing happen: poll looks at how much each socket still
// has to send, and a change there is progress too.
type activity struct {
	last atomic.Int64 // unix nanoseconds

	mu     sync.Mutex
	queued map[*net.TCPConn]int // bytes unsent at the last poll
}

// wrap returns c marking the activity as bytes move on it.
func (a *activity) wrap(c net.Conn) net.Conn {
	ac := &activityConn{Conn: c, a: a}
	if tc, ok := c.(*net.TCPConn); ok {
		ac.tcp = tc
		a.mu.Lock()
		if a.queued == nil {
			a.queued = map[*net.TCPConn]int{}
		}
		a.queued[tc] = 0
		a.mu.Unlock()
	}
	return ac
}

func (a *activity) mark() { a.last.Store(time.Now().UnixNano()) }

// poll marks activity if any socket's unsent bytes changed since the
// last poll.
func (a *activity) poll() {
	a.mu.Lock()
	defer a.mu.Unlock()
	for c, before := range a.queued {
		if now := unsent(c); now >= 0 && now != before {
			a.queued[c] = now
			a.mark()
		}
	}
}

// activityConn marks activity on every read and write that moves bytes.
type activityConn struct {
	net.Conn
	a   *activity
	tcp *net.TCPConn
}

func (c *activityConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.a.mark()
	}
	return n, err
}

func (c *activityConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	if n > 0 {
		c.a.mark()
	}
	return n, err
}

func (c *activityConn) Close() error {
	if c.tcp != nil {
		c.a.mu.Lock()
		delete(c.a.queued, c.tcp)
		c.a.mu.Unlock()
	}
	return c.Conn.Close()
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
