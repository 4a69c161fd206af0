package daemon

import (
	"errors"
	"fmt"
	"testing"
	"time"
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
