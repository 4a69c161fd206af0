package store

import (
	"context"
	"path/filepath"
	"testing"
)

func TestPullRecordKeepsTheLastPullPerReference(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	const ref = "127.0.0.1:5000/app:v1"
	if p, ok, err := s.LastPull(ctx, ref); err != nil || ok || !p.PulledAt.IsZero() {
		t.Fatalf("never pulled: %+v %v %v", p, ok, err)
	}
	for i, id := range []string{"sha256:aaa", "sha256:bbb"} {
		if err := s.RecordPull(ctx, Pull{Ref: ref, ImageID: id, PulledAt: at(i)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.RecordPull(ctx, Pull{Ref: "other:1", ImageID: "sha256:ccc", PulledAt: at(5)}); err != nil {
		t.Fatal(err)
	}
	p, ok, err := s.LastPull(ctx, ref)
	if err != nil || !ok || p.ImageID != "sha256:bbb" || !p.PulledAt.Equal(at(1)) || p.PulledAt.Location().String() != "UTC" {
		t.Fatalf("last pull: %+v %v %v; want sha256:bbb at %v in UTC", p, ok, err, at(1))
	}
}

func TestPullRecordSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "gitopsd.db")
	ctx := context.Background()
	s, err := Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.RecordPull(ctx, Pull{Ref: "app:v1", ImageID: "sha256:aaa", PulledAt: at(1)}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if p, ok, err := s.LastPull(ctx, "app:v1"); err != nil || !ok || !p.PulledAt.Equal(at(1)) {
		t.Fatalf("after reopen: %+v %v %v", p, ok, err)
	}
}
