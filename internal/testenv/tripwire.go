package testenv

import (
	"io"
	"sync"
)

// Tripwire calls its function once, when a reader it wraps has read a
// given number of bytes: a server stopped in the middle of a transfer
// that really runs, rather than a fake that fails on cue.
type Tripwire struct {
	after int64
	fn    func()
	once  sync.Once
	mu    sync.Mutex
	fired bool
}

// NewTripwire returns a Tripwire that calls fn once a wrapped reader has
// read after bytes.
func NewTripwire(after int64, fn func()) *Tripwire {
	return &Tripwire{after: after, fn: fn}
}

// Reader wraps r; each wrapped reader counts its own bytes.
func (t *Tripwire) Reader(r io.Reader) io.Reader { return &tripReader{r: r, t: t} }

// Fired says whether the function was called.
func (t *Tripwire) Fired() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.fired
}

type tripReader struct {
	r    io.Reader
	t    *Tripwire
	read int64
}

func (r *tripReader) Read(p []byte) (int, error) {
	n, err := r.r.Read(p)
	r.read += int64(n)
	if r.read >= r.t.after {
		r.t.once.Do(func() {
			r.t.fn()
			r.t.mu.Lock()
			r.t.fired = true
			r.t.mu.Unlock()
		})
	}
	return n, err
}
