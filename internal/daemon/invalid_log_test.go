package daemon

import (
	"strings"
	"testing"
)

// TestInvalidStackLoggedOncePerRevision: an Invalid stack's error is logged
// once for a revision, not at every poll; a new revision that is still
// invalid is logged again.
func TestInvalidStackLoggedOncePerRevision(t *testing.T) {
	h := newHarness(t, nil)
	var logs lockedBuffer
	h.logTo = &logs
	h.stop()
	h.start()
	file := "stacks/broken/compose.yaml"
	h.repo.Commit(t, "broken", map[string]string{file: "services:\n  app:\n    image: example/app:1\n   ports: [oops\n"})
	count := func() int { return strings.Count(logs.String(), "stack invalid") }
	for i := 0; i < 3; i++ {
		_ = h.reconcile() // fails: the stack is invalid
	}
	if n := count(); n != 1 {
		t.Fatalf("three polls of one invalid revision logged %d errors, want 1:\n%s", n, logs.String())
	}
	h.repo.Commit(t, "still broken", map[string]string{file: "services:\n  app:\n    image: example/app:2\n   ports: [oops\n"})
	for i := 0; i < 2; i++ {
		_ = h.reconcile()
	}
	if n := count(); n != 2 {
		t.Fatalf("a new invalid revision, polled twice, brought the errors logged to %d, want 2:\n%s", n, logs.String())
	}
	if st := h.stackStatus("broken"); st.Sync != "Invalid" {
		t.Fatalf("status: %+v", st)
	}
}
