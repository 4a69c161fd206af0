package daemon

import (
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/gitopsd/gitopsd/internal/config"
	"github.com/gitopsd/gitopsd/internal/metrics"
)

// TestLoopErrorsLeaveStacksTheirOwn: of a reconcile's joined error, only
// what is no one stack's is the loop's, however deep the joins go.
func TestLoopErrorsLeaveStacksTheirOwn(t *testing.T) {
	store := errors.New("record revision abc: no such table: revisions")
	a := &stackError{fmt.Errorf("stack a: %w", errors.New("health gate"))}
	b := &stackError{fmt.Errorf("remove stack b: %w", errors.New("busy"))}
	for _, tc := range []struct {
		name string
		err  error
		want string
	}{
		{"none", nil, ""},
		{"stacks only", errors.Join(a, errors.Join(b, nil)), ""},
		{"the loop's alone", store, store.Error()},
		{"mixed, nested", errors.Join(a, errors.Join(b, store)), store.Error()},
	} {
		got := ""
		if err := loopErrors(tc.err); err != nil {
			got = err.Error()
		}
		if got != tc.want {
			t.Errorf("%s: loopErrors = %q, want %q", tc.name, got, tc.want)
		}
	}
}

// TestStoreErrorLoggedOnceAMinute: a store that stays unwritable is logged
// at its first failure and then once per storeLogEvery, and held until a
// write works.
func TestStoreErrorLoggedOnceAMinute(t *testing.T) {
	var l loopState
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	full := errors.New("database or disk is full")
	var logged []int
	for s := 0; s <= 130; s++ { // a failing check every second
		if l.storeFailed(full, t0.Add(time.Duration(s)*time.Second)) {
			logged = append(logged, s)
		}
	}
	if fmt.Sprint(logged) != "[0 60 120]" {
		t.Fatalf("logged at seconds %v, want [0 60 120]", logged)
	}
	if snap := l.snapshot(); snap.storeErr != full.Error() || !snap.storeErrSince.Equal(t0) {
		t.Fatalf("held %q since %s", snap.storeErr, snap.storeErrSince)
	}
	if !l.storeWrote() || l.snapshot().storeErr != "" || l.storeWrote() {
		t.Fatal("a write that works must clear the store error, once")
	}
	if !l.storeFailed(full, t0.Add(131*time.Second)) {
		t.Fatal("a new failure after recovery must be logged at once")
	}
}

// TestNoteStoreLogsByTheDaemonsClock: the once-a-minute log of an
// unwritable store counts minutes on the daemon's clock, so a test (or a
// host whose clock is replaced) decides when it logs again.
func TestNoteStoreLogsByTheDaemonsClock(t *testing.T) {
	var logs strings.Builder
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	now := t0
	d := &Daemon{
		cfg: &config.Config{StateDir: t.TempDir()}, log: slog.New(slog.NewTextHandler(&logs, nil)),
		metrics: metrics.New(nil), now: func() time.Time { return now },
	}
	full := errors.New("database or disk is full")
	for s := 0; s <= 130; s++ { // a failing write every second of the daemon's clock
		now = t0.Add(time.Duration(s) * time.Second)
		d.noteStore("record drift of stack web", full)
	}
	if n := strings.Count(logs.String(), "cannot write the store"); n != 3 {
		t.Fatalf("over 130 s of the daemon's clock the store error was logged %d times, want 3 (at 0, 60 and 120 s):\n%s", n, logs.String())
	}
	if snap := d.loop.snapshot(); !snap.storeErrSince.Equal(t0) {
		t.Fatalf("store error held since %s, want %s", snap.storeErrSince, t0)
	}
}
