package store

import (
	"context"
	"testing"
)

func TestBuildsFindTheLastGoodBuildOfADigest(t *testing.T) {
	s := openTest(t)
	ctx := context.Background()
	if _, ok, err := s.LastGoodBuild(ctx, "web", "app", "d1"); err != nil || ok {
		t.Fatalf("no builds yet: ok %v, %v", ok, err)
	}
	for _, b := range []Build{
		{Stack: "web", Service: "app", Digest: "d1", Revision: "r1", ImageID: "sha256:a", Tag: "web-app", OK: true, StartedAt: at(1), FinishedAt: at(2)},
		{Stack: "web", Service: "app", Digest: "d1", Revision: "r2", ImageID: "sha256:b", Tag: "web-app", OK: true, StartedAt: at(3), FinishedAt: at(4)},
		{Stack: "web", Service: "app", Digest: "d1", Revision: "r3", OK: false, Error: "step 2: boom", StartedAt: at(5), FinishedAt: at(6)},
		{Stack: "web", Service: "db", Digest: "d1", Revision: "r3", ImageID: "sha256:c", OK: true, StartedAt: at(5), FinishedAt: at(6)},
	} {
		if _, err := s.RecordBuild(ctx, b); err != nil {
			t.Fatal(err)
		}
	}
	b, ok, err := s.LastGoodBuild(ctx, "web", "app", "d1")
	if err != nil || !ok || b.ImageID != "sha256:b" || b.Revision != "r2" || !b.FinishedAt.Equal(at(4)) {
		t.Fatalf("last good build of web/app d1: %+v ok %v, %v", b, ok, err)
	}
	all, err := s.Builds(ctx, "web")
	if err != nil || len(all) != 4 || all[1].OK || all[1].Error != "step 2: boom" {
		t.Fatalf("builds of web, newest first: %+v, %v", all, err)
	}
}
