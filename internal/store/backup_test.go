package store

import (
	"context"
	"testing"
)

func TestLastSnapshotStarted(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	if at, err := s.LastSnapshotStarted(ctx, "web", "data", "schedule"); err != nil || !at.IsZero() {
		t.Fatalf("none yet: %v %v", at, err)
	}
	for i, trig := range []string{"schedule", "schedule", "manual"} {
		if _, err := s.StartSnapshot(ctx, Snapshot{Stack: "web", Volume: "data", Trigger: trig, StartedAt: at(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if got, err := s.LastSnapshotStarted(ctx, "web", "data", "schedule"); err != nil || !got.Equal(at(1)) {
		t.Fatalf("last scheduled: %v %v, want %v", got, err, at(1))
	}
}
