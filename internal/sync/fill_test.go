package sync

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"

	"github.com/gitopsd/gitopsd/internal/stack"
	"github.com/gitopsd/gitopsd/internal/store"
)

// fakeFiller fills volume "data" with err as its outcome.
type fakeFiller struct {
	err   error
	calls int
}

func (f *fakeFiller) Fills(_ *stack.Stack, key string) bool { return key == "data" }

func (f *fakeFiller) Fill(context.Context, *stack.Stack, string) (string, error) {
	f.calls++
	if f.err != nil {
		return "", f.err
	}
	return "restored snapshot 7", nil
}

// TestFillBeforeServices: a volume the sync creates and the Filler fills is
// filled as a step of the deployment, after its creation and before any
// container; a failed fill starts nothing, fails the stack with the reason,
// holds nothing (the next sync tries again), and a volume the sync does
// not create is never filled.
func TestFillBeforeServices(t *testing.T) {
	w := newWorld(t)
	f := &fakeFiller{err: errors.New("remote down")}
	w.rec.Filler = f
	st := w.load("services:\n  web:\n    image: app:1\n    volumes: [\"data:/data\", \"logs:/logs\"]\nvolumes:\n  data: {}\n  logs: {}\n")

	err := w.rec.Sync(w.ctx, st, "r1", TriggerPoll)
	if err == nil || !strings.Contains(err.Error(), "remote down") {
		t.Fatalf("sync with a failing fill: %v", err)
	}
	if imgs := w.images(); len(imgs) != 0 {
		t.Fatalf("containers started without their data: %v", imgs)
	}
	if s := w.state(); s.Sync != string(Failed) || !strings.Contains(s.Error, "remote down") || s.FailedRevision != "" {
		t.Fatalf("state after a failed fill: %+v", s)
	}

	// The daemon's Filler removes the volume it could not fill; the next
	// sync creates and fills it again.
	w.rt.DropVolume("s_data")
	f.err = nil
	if err := w.rec.Sync(w.ctx, st, "r1", TriggerPoll); err != nil {
		t.Fatalf("sync: %v", err)
	}
	steps := w.lastDeployment().Steps
	fill := slices.IndexFunc(steps, func(s store.Step) bool { return s.Action == string(ActRestoreVolume) })
	create := slices.IndexFunc(steps, func(s store.Step) bool { return s.Action == string(ActCreate) })
	if fill < 0 || create < fill || steps[fill].Container != "data" || steps[fill].Detail != "restore: if_empty; restored snapshot 7" {
		t.Fatalf("steps: %+v", steps)
	}
	if f.calls != 2 {
		t.Fatalf("filled %d times, want 2", f.calls)
	}
	// The volume exists now: a later sync does not fill it again.
	if err := w.rec.Sync(w.ctx, w.load("services:\n  web:\n    image: app:2\n    volumes: [\"data:/data\", \"logs:/logs\"]\nvolumes:\n  data: {}\n  logs: {}\n"), "r2", TriggerPoll); err != nil {
		t.Fatalf("sync r2: %v", err)
	}
	if f.calls != 2 {
		t.Fatalf("an existing volume was filled again (%d calls)", f.calls)
	}
}

// TestHealFillsAVolumeGoneWithItsContainers: a volume removed with its
// containers (docker compose down -v) under a stack that runs its revision
// is filled by the heal that brings it back, before the container starts;
// a failed fill starts nothing.
func TestHealFillsAVolumeGoneWithItsContainers(t *testing.T) {
	w := newWorld(t)
	f := &fakeFiller{}
	w.rec.Filler = f
	st := w.load("services:\n  web:\n    image: app:1\n    volumes: [\"data:/data\"]\nvolumes:\n  data: {}\n")
	if err := w.rec.Sync(w.ctx, st, "r1", TriggerPoll); err != nil || f.calls != 1 {
		t.Fatalf("sync: %v (fills %d)", err, f.calls)
	}
	w.rt.Vanish("s-web-1")
	w.rt.DropVolume("s_data")
	f.err = errors.New("remote down")
	if err := w.rec.Heal(w.ctx, st, "r1", map[string]bool{"web": true}); err == nil || !strings.Contains(err.Error(), "remote down") {
		t.Fatalf("heal with a failing fill: %v", err)
	}
	if imgs := w.images(); len(imgs) != 0 {
		t.Fatalf("a container started on an empty volume: %v", imgs)
	}
	w.rt.DropVolume("s_data")
	f.err = nil
	if err := w.rec.Heal(w.ctx, st, "r1", map[string]bool{"web": true}); err != nil {
		t.Fatalf("heal: %v", err)
	}
	steps := w.lastDeployment().Steps
	fill := slices.IndexFunc(steps, func(s store.Step) bool { return s.Action == string(ActRestoreVolume) })
	create := slices.IndexFunc(steps, func(s store.Step) bool { return s.Action == string(ActCreate) })
	if f.calls != 3 || fill < 0 || create < fill {
		t.Fatalf("fills %d, steps %+v", f.calls, steps)
	}
	if imgs := w.images(); imgs["s-web-1"] != "app:1 running" {
		t.Fatalf("after the heal: %v", imgs)
	}
}
