package store

import (
	"context"
	"testing"
)

func TestImagesUnusedSinceAndRemoved(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	for _, im := range []struct{ id, ref, origin string }{
		{"sha256:old", "web-app", ImageBuilt},
		{"sha256:kept", "web-app", ImageBuilt},
		{"sha256:pulled", "127.0.0.1:5000/app:v1", ImagePulled},
	} {
		if err := s.NoteImage(ctx, im.id, im.ref, im.origin, at(1)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.MarkImagesUsed(ctx, []string{"sha256:kept", "sha256:not-ours"}, at(5)); err != nil {
		t.Fatal(err)
	}
	unused, err := s.UnusedImages(ctx, at(3))
	if err != nil || len(unused) != 2 || unused[0].ID == "sha256:kept" || unused[1].ID == "sha256:kept" {
		t.Fatalf("unused before at(3): %+v, %v", unused, err)
	}
	if err := s.MarkImageRemoved(ctx, "sha256:old", at(6)); err != nil {
		t.Fatal(err)
	}
	unused, err = s.UnusedImages(ctx, at(10))
	if err != nil || len(unused) != 2 {
		t.Fatalf("unused before at(10), after removing one: %+v, %v", unused, err)
	}
	// Built again: on the host again, in use from now.
	if err := s.NoteImage(ctx, "sha256:old", "web-app", ImageBuilt, at(7)); err != nil {
		t.Fatal(err)
	}
	all, err := s.Images(ctx)
	if err != nil || len(all) != 3 {
		t.Fatalf("images: %+v, %v", all, err)
	}
	for _, im := range all {
		if im.ID == "sha256:old" && (!im.RemovedAt.IsZero() || !im.LastUsedAt.Equal(at(7))) {
			t.Errorf("an image built again: %+v", im)
		}
	}
}

func TestAdoptImageLeavesRecordedOnesAlone(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	if err := s.NoteImage(ctx, "sha256:known", "web-app", ImageBuilt, at(1)); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		id      string
		adopted bool
	}{{"sha256:known", false}, {"sha256:orphan", true}, {"sha256:orphan", false}} {
		adopted, err := s.AdoptImage(ctx, tc.id, "web-app", ImageBuilt, at(5))
		if err != nil || adopted != tc.adopted {
			t.Fatalf("adopt %s: %v, %v; want %v", tc.id, adopted, err, tc.adopted)
		}
	}
	all, err := s.Images(ctx)
	if err != nil || len(all) != 2 || !all[0].LastUsedAt.Equal(at(1)) || !all[1].AddedAt.Equal(at(5)) {
		t.Fatalf("images: %+v, %v", all, err)
	}
}
