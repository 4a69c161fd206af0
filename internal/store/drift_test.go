package store

import (
	"context"
	"testing"
)

func TestDriftOpenIsIdempotentAndCloses(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	d := Drift{Stack: "web", Service: "app", Container: "web-app-1", Kind: "stopped", Detail: "container exited", OpenedAt: at(1)}
	id, opened, err := s.OpenDrift(ctx, d)
	if err != nil || !opened {
		t.Fatalf("first open: %d %v %v", id, opened, err)
	}
	d.Detail, d.OpenedAt = "container exited (137)", at(2)
	again, opened, err := s.OpenDrift(ctx, d)
	if err != nil || opened || again != id {
		t.Fatalf("second open of the same drift: id %d (want %d), opened %v, %v", again, id, opened, err)
	}
	other, _, err := s.OpenDrift(ctx, Drift{Stack: "web", Kind: "behind", OpenedAt: at(3)})
	if err != nil || other == id {
		t.Fatalf("a different drift: %d, %v", other, err)
	}
	open, err := s.OpenDrifts(ctx, "web")
	if err != nil || len(open) != 2 || open[0].Detail != "container exited (137)" || !open[0].OpenedAt.Equal(at(1)) {
		t.Fatalf("open drifts: %+v, %v", open, err)
	}

	if err := s.CloseDrift(ctx, id, "healed", at(4)); err != nil {
		t.Fatal(err)
	}
	if err := s.CloseDrift(ctx, id, "resolved", at(5)); err != nil {
		t.Fatal(err)
	}
	all, err := s.Drifts(ctx, 10)
	if err != nil || len(all) != 2 {
		t.Fatalf("drifts: %+v, %v", all, err)
	}
	closed := all[1]
	if closed.ID != id || closed.Open() || closed.ClosedBy != "healed" || !closed.ClosedAt.Equal(at(4)) {
		t.Fatalf("closing twice must keep the first close: %+v", closed)
	}
	// The same drift can open again once the first one closed.
	reopened, opened, err := s.OpenDrift(ctx, Drift{Stack: "web", Service: "app", Container: "web-app-1", Kind: "stopped", OpenedAt: at(6)})
	if err != nil || !opened || reopened == id {
		t.Fatalf("reopen: %d %v %v", reopened, opened, err)
	}
	if n, err := s.CountDrifts(ctx, "web"); err != nil || n != 3 {
		t.Fatalf("count: %d, %v", n, err)
	}
	if recent, err := s.Drifts(ctx, 0); err != nil || len(recent) != 3 || recent[0].ID != reopened {
		t.Fatalf("newest first: %+v, %v", recent, err)
	}
}
