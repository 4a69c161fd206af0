package drift

import (
	"sync"
	"time"
)

// Backoff spaces the heals of one thing (a stack's service) whose heals
// keep failing, as a container that crashes at start does: after the n-th
// failed heal in a row the next waits Base*2^(n-1), up to Max. A heal that
// succeeds ends the episode, and so does quiet: no failed heal for the
// delay plus Quiet. A service that drifts often but heals well (an operator
// stopping it again and again) is never held back.
type Backoff struct {
	Base, Max, Quiet time.Duration

	mu    sync.Mutex
	state map[string]*episode
}

type episode struct {
	failures int       // failed heals in a row
	last     time.Time // when the last failed heal ended
}

// NewBackoff returns a backoff with the daemon's defaults: 1s doubling to
// 5 min, an episode ending after 1 min of quiet.
func NewBackoff() *Backoff {
	return &Backoff{Base: time.Second, Max: 5 * time.Minute, Quiet: time.Minute}
}

// delay is the wait after the n-th failed heal in a row.
func (b *Backoff) delay(n int) time.Duration {
	d := b.Base
	for i := 1; i < n && d < b.Max; i++ {
		d *= 2
	}
	return min(d, b.Max)
}

// current is key's episode as of now, nil when there is none.
func (b *Backoff) current(key string, now time.Time) *episode {
	e := b.state[key]
	if e == nil || e.failures == 0 {
		return nil
	}
	if now.Sub(e.last) > b.delay(e.failures)+b.Quiet {
		delete(b.state, key)
		return nil
	}
	return e
}

// Wait says how long key must wait before its next heal (0: heal now).
func (b *Backoff) Wait(key string, now time.Time) time.Duration {
	b.mu.Lock()
	defer b.mu.Unlock()
	e := b.current(key, now)
	if e == nil {
		return 0
	}
	return max(0, e.last.Add(b.delay(e.failures)).Sub(now))
}

// Healed records how a heal of key ended.
func (b *Backoff) Healed(key string, ok bool, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if ok {
		delete(b.state, key)
		return
	}
	if b.state == nil {
		b.state = map[string]*episode{}
	}
	e := b.current(key, now)
	if e == nil {
		e = &episode{}
		b.state[key] = e
	}
	e.failures++
	e.last = now
}

// Struggling reports whether key's last heal failed and its episode is not
// over: the stack shows Degraded meanwhile.
func (b *Backoff) Struggling(key string, now time.Time) bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.current(key, now) != nil
}

// Forget drops what is known of key (its stack was removed).
func (b *Backoff) Forget(key string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	delete(b.state, key)
}
