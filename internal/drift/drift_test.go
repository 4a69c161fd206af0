package drift

import (
	"reflect"
	"testing"
	"time"

	"github.com/gitopsd/gitopsd/internal/sync"
)

func TestClassify(t *testing.T) {
	plan := sync.Plan{Stack: "web", Actions: []sync.Action{
		{Kind: sync.ActCreateNetwork, Key: "default"},
		{Kind: sync.ActRemove, Service: "", Name: "by-hand", Reasons: []string{"service removed"}},
		{Kind: sync.ActCreate, Service: "app", Number: 2, Name: "web-app-2"},
		{Kind: sync.ActStart, Service: "app", Number: 1, Name: "web-app-1", Reasons: []string{"container exited"}},
		{Kind: sync.ActUnpause, Service: "db", Number: 1, Name: "web-db-1", Reasons: []string{"container paused"}},
		{Kind: sync.ActRecreate, Service: "api", Number: 1, Name: "web-api-1", Reasons: []string{"env"}},
		{Kind: sync.ActRecreate, Service: "img", Number: 1, Name: "web-img-1", Reasons: []string{"image changed"}},
		{Kind: sync.ActRestart, Service: "dep", Number: 1, Name: "web-dep-1"},
		{Kind: sync.ActRemoveNetwork, Key: "old"},
	}}
	got := map[string]Kind{}
	for _, f := range Classify(plan) {
		if f.Stack != "web" {
			t.Fatalf("finding of another stack: %+v", f)
		}
		got[f.Container] = f.Kind
	}
	want := map[string]Kind{
		"network:default": Missing, "by-hand": Extra, "web-app-2": Missing, "web-app-1": Stopped,
		"web-db-1": Stopped, "web-api-1": Modified, "web-img-1": Image,
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Classify:\n got %v\nwant %v", got, want)
	}
	if len(Classify(sync.Plan{Stack: "web"})) != 0 {
		t.Fatal("an empty plan is no drift")
	}
}

func TestBackoffSpacesFailedHeals(t *testing.T) {
	b := &Backoff{Base: time.Second, Max: 8 * time.Second, Quiet: time.Minute}
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }

	// Heals that succeed are never held back, however often they come.
	for s := 0.0; s < 5; s++ {
		if w := b.Wait("s/app", at(s)); w != 0 {
			t.Fatalf("a heal after successful ones waits %v", w)
		}
		b.Healed("s/app", true, at(s+0.5))
	}
	// A crash loop: every heal fails at once. Heals go at 10, 11, 13, 17,
	// 25, 33, ... (1s doubling to 8s after each failure).
	var heals []float64
	for now := 10.0; now < 60; now += 0.25 {
		if b.Wait("s/app", at(now)) == 0 {
			heals = append(heals, now)
			b.Healed("s/app", false, at(now))
		}
	}
	want := []float64{10, 11, 13, 17, 25, 33, 41, 49, 57}
	if !reflect.DeepEqual(heals, want) {
		t.Fatalf("heals at %v, want %v", heals, want)
	}
	if !b.Struggling("s/app", at(58)) {
		t.Fatal("a crash loop must count as struggling")
	}
	if b.Wait("s/db", at(58)) != 0 || b.Struggling("s/db", at(58)) {
		t.Fatal("another service is not held back")
	}
	// Quiet for longer than the delay plus Quiet: a new episode.
	if w := b.Wait("s/app", at(57+8+61)); w != 0 || b.Struggling("s/app", at(57+8+61)) {
		t.Fatalf("after a quiet minute the heal waits %v", w)
	}
	// One successful heal ends an episode at once.
	b.Healed("s/app", false, at(200))
	b.Healed("s/app", true, at(201))
	if b.Wait("s/app", at(201)) != 0 || b.Struggling("s/app", at(201)) {
		t.Fatal("a successful heal ends the episode")
	}
	b.Healed("s/app", false, at(300))
	b.Forget("s/app")
	if b.Struggling("s/app", at(300)) {
		t.Fatal("forgotten")
	}
}
