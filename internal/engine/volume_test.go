package engine_test

import (
	"context"
	"fmt"
	"testing"

	"github.com/moby/moby/client"

	"github.com/gitopsd/gitopsd/internal/engine"
	"github.com/gitopsd/gitopsd/internal/testenv"
)

// TestDeclaredVolumeSaysWhoMadeIt: a volume the project declares is found
// by its name whatever its labels, and Foreign says, in compose's words,
// when the project did not make it: made by hand, or for another project.
func TestDeclaredVolumeSaysWhoMadeIt(t *testing.T) {
	e := newEngine(t)
	cli := testenv.Docker(t)
	ctx := context.Background()
	name := testenv.UniqueName(t, "declvol")
	p := loadProject(t, name, "services:\n  app: {image: scratch}\nvolumes:\n  hand: {}\n  other: {}\n  ours: {}\n  none: {}\n")
	create := func(key string, labels map[string]string) string {
		t.Helper()
		vol := p.Volumes[key].Name
		labels[testenv.TestLabel] = "1"
		if _, err := cli.VolumeCreate(ctx, client.VolumeCreateOptions{Name: vol, Labels: labels}); err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() {
			if _, err := cli.VolumeRemove(context.Background(), vol, client.VolumeRemoveOptions{Force: true}); err != nil {
				t.Errorf("cleanup: remove volume %s: %v", vol, err)
			}
		})
		return vol
	}
	hand := create("hand", map[string]string{})
	other := create("other", map[string]string{engine.LabelProject: "elsewhere", engine.LabelVolume: "other"})
	create("ours", map[string]string{engine.LabelProject: name, engine.LabelVolume: "ours"})

	for _, tc := range []struct {
		key, foreign string
		found        bool
	}{
		{"hand", fmt.Sprintf("volume %q already exists but was not created by Docker Compose", hand), true},
		{"other", fmt.Sprintf("volume %q already exists but was created for project \"elsewhere\" (expected %q)", other, name), true},
		{"ours", "", true},
		{"none", "", false},
	} {
		v, ok, err := e.DeclaredVolume(ctx, p, tc.key)
		if err != nil {
			t.Fatalf("%s: %v", tc.key, err)
		}
		if ok != tc.found || v.Foreign != tc.foreign || (ok && (v.Key != tc.key || v.Name != p.Volumes[tc.key].Name)) {
			t.Errorf("%s: %+v found %v; want found %v, foreign %q", tc.key, v, ok, tc.found, tc.foreign)
		}
	}
	if _, _, err := e.DeclaredVolume(ctx, p, "undeclared"); err == nil {
		t.Error("an undeclared key is no error")
	}
}
