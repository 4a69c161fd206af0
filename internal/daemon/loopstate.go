package daemon

import (
	"errors"
	"path/filepath"
	gosync "sync"
	"time"
)

// What the loop knows about itself that the store may not be able to say:
// a fetch in flight, the last fetch's error, the last error of a reconcile
// that no stack row holds, and a store that cannot be written. It lives in
// memory so that status and the metrics tell the truth even when the
// database is the thing that broke.

// storeLogEvery is how often a store that stays unwritable is logged again.
const storeLogEvery = time.Minute

type loopState struct {
	mu gosync.Mutex

	fetchingSince time.Time // zero: no fetch in flight
	sourceErr     string    // the last fetch's error ("" if it worked)
	fetchedOnce   bool      // sourceErr is this run's, not unknown

	loopErr   string // the last reconcile's error no stack row holds
	loopErrAt time.Time

	storeErr      string // the last write to the store that failed, "" once one works
	storeErrSince time.Time
	storeLoggedAt time.Time
}

// loopSnapshot is a copy of loopState for status.
type loopSnapshot struct {
	fetchingSince time.Time
	sourceErr     string
	fetchedOnce   bool
	loopErr       string
	loopErrAt     time.Time
	storeErr      string
	storeErrSince time.Time
}

func (l *loopState) snapshot() loopSnapshot {
	l.mu.Lock()
	defer l.mu.Unlock()
	return loopSnapshot{
		fetchingSince: l.fetchingSince, sourceErr: l.sourceErr, fetchedOnce: l.fetchedOnce,
		loopErr: l.loopErr, loopErrAt: l.loopErrAt, storeErr: l.storeErr, storeErrSince: l.storeErrSince,
	}
}

func (l *loopState) fetchStarted(at time.Time) {
	l.mu.Lock()
	l.fetchingSince = at
	l.mu.Unlock()
}

func (l *loopState) fetchEnded(sourceErr string) {
	l.mu.Lock()
	l.fetchingSince, l.sourceErr, l.fetchedOnce = time.Time{}, sourceErr, true
	l.mu.Unlock()
}

func (l *loopState) setLoopErr(err error, at time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if err == nil {
		l.loopErr, l.loopErrAt = "", time.Time{}
		return
	}
	l.loopErr, l.loopErrAt = err.Error(), at
}

// storeFailed records a failed write and says whether to log it: the first
// time, then once per storeLogEvery while the store stays unwritable.
func (l *loopState) storeFailed(err error, now time.Time) (log bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.storeErr == "" {
		l.storeErrSince = now
	}
	l.storeErr = err.Error()
	if now.Sub(l.storeLoggedAt) >= storeLogEvery {
		l.storeLoggedAt = now
		return true
	}
	return false
}

// storeFailing says whether the last write to the store failed.
func (l *loopState) storeFailing() bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.storeErr != ""
}

// storeWrote clears a store error once a write works again, and says
// whether there was one.
func (l *loopState) storeWrote() (recovered bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.storeErr == "" {
		return false
	}
	l.storeErr, l.storeErrSince, l.storeLoggedAt = "", time.Time{}, time.Time{}
	return true
}

// noteStore takes the outcome of a write the loop could not do without
// but must not stop for (a drift row, the source state, a heal's record):
// a failure is counted, held for status, and logged at most once a minute;
// a success clears it.
func (d *Daemon) noteStore(what string, err error) {
	if err == nil {
		if d.loop.storeWrote() {
			d.log.Info("the store is writable again", "path", d.storePath())
		}
		d.metrics.StoreWritable(true)
		return
	}
	err = errors.New(what + ": " + err.Error())
	d.metrics.StoreWritable(false)
	if d.loop.storeFailed(err, d.now()) {
		d.log.Error("cannot write the store; healing goes on, its record is lost (logged once a minute while it lasts)",
			"path", d.storePath(), "err", err)
	}
}

// stackError marks the error of one stack in a reconcile: its row and
// metrics hold it already. Any other error of a reconcile is the loop's own.
type stackError struct{ err error }

func (e *stackError) Error() string { return e.err.Error() }
func (e *stackError) Unwrap() error { return e.err }

// loopErrors is what of a reconcile's error is not one stack's: the
// errors that stop every stack (the store, the checkout, the revision).
func loopErrors(err error) error {
	if err == nil {
		return nil
	}
	if _, ok := err.(*stackError); ok {
		return nil
	}
	if j, ok := err.(interface{ Unwrap() []error }); ok {
		var rest []error
		for _, e := range j.Unwrap() {
			if r := loopErrors(e); r != nil {
				rest = append(rest, r)
			}
		}
		return errors.Join(rest...)
	}
	return err
}

func (d *Daemon) storePath() string { return filepath.Join(d.cfg.StateDir, "gitopsd.db") }
