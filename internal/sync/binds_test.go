package sync

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
)

// TestReadOnlyCheckoutBinds: binds into the stack's folder (through the
// live view's link), into a checkout by its real path, or into a path of
// the folder that does not exist yet are made read-only; other binds and
// volumes are left as written, and the project's own slice is not changed.
func TestReadOnlyCheckoutBinds(t *testing.T) {
	state := t.TempDir()
	checkout := filepath.Join(state, "source", "checkouts", "abc", "stacks", "web")
	if err := os.MkdirAll(checkout, 0o755); err != nil {
		t.Fatal(err)
	}
	live := filepath.Join(state, "live", "stacks")
	if err := os.MkdirAll(live, 0o755); err != nil {
		t.Fatal(err)
	}
	stackDir := filepath.Join(live, "web")
	if err := os.Symlink(checkout, stackDir); err != nil {
		t.Fatal(err)
	}
	elsewhere := t.TempDir()
	bind := func(source, target string, ro bool) types.ServiceVolumeConfig {
		return types.ServiceVolumeConfig{Type: types.VolumeTypeBind, Source: source, Target: target, ReadOnly: ro}
	}
	vols := []types.ServiceVolumeConfig{
		bind(stackDir, "/repo", false),                           // .:/repo
		bind(filepath.Join(stackDir, "data"), "/data", false),    // ./data, not there yet
		bind("conf", "/conf", false),                             // relative, as written
		bind(filepath.Join(checkout, "..", ".."), "/all", false), // the checkout by its real path
		bind(elsewhere, "/host", false),
		bind(stackDir+"-other", "/sibling", false), // in the live view, but only named like the folder
		bind(stackDir, "/ro", true),
		{Type: types.VolumeTypeVolume, Source: "data", Target: "/v"},
	}
	svc := types.ServiceConfig{Name: "app", Volumes: vols}
	got := readOnlyCheckoutBinds(svc, stackDir, stackDir, []string{filepath.Join(state, "source"), filepath.Join(state, "live")})
	want := map[string]bool{"/repo": true, "/data": true, "/conf": true, "/all": true, "/host": false, "/sibling": true, "/ro": true, "/v": false}
	for _, v := range got.Volumes {
		if v.ReadOnly != want[v.Target] {
			t.Errorf("%s (%s): read-only %v, want %v", v.Target, v.Source, v.ReadOnly, want[v.Target])
		}
	}
	if vols[0].ReadOnly {
		t.Error("the project's volumes were changed in place")
	}
	// Without the daemon's folders, the stack's own folder is still covered.
	if got := readOnlyCheckoutBinds(svc, stackDir, stackDir, nil); !got.Volumes[0].ReadOnly || got.Volumes[3].ReadOnly || got.Volumes[5].ReadOnly {
		t.Errorf("with the stack folder alone: %+v", got.Volumes)
	}
}
