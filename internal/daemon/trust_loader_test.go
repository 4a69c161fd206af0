package daemon

import (
	"strings"
	"testing"

	"github.com/gitopsd/gitopsd/internal/config"
	"github.com/gitopsd/gitopsd/internal/testenv"
)

// TestLabelFilesOfHostFilesAreRefused (issue 15, hole 3): under the strict
// preset, label_file: [/dev/zero] (which read without end took the daemon
// down with an out-of-memory error no recover catches) and label_file:
// [/etc/shadow] (which read a host secret into labels) make their stacks
// Invalid, naming the file, before compose-go opens it. The daemon carries
// on: the other stack deploys, and the next revision still converges. A
// stack with such a file that targets other hosts is passed over unread:
// not even judged Invalid here.
func TestLabelFilesOfHostFilesAreRefused(t *testing.T) {
	h := newHarness(t, nil)
	h.cfg.Policy = config.Policy{Preset: config.PresetStrict}
	h.stop()
	h.start()
	good := testenv.Project(t, "good")
	zero := testenv.Project(t, "zero")
	shadow := testenv.Project(t, "shadow")
	elsewhere := testenv.Project(t, "elsewhere")
	h.repo.Commit(t, "stacks that read host files into labels", map[string]string{
		"stacks/" + good + "/compose.yaml":   simpleStack(h.image, ""),
		"stacks/" + zero + "/compose.yaml":   simpleStack(h.image, "    label_file: [/dev/zero]"),
		"stacks/" + shadow + "/compose.yaml": simpleStack(h.image, "    label_file: [/etc/shadow]"),
		"stacks/" + elsewhere + "/compose.yaml": simpleStack(h.image, "    label_file: [/dev/zero]") +
			"x-gitopsd:\n  targets:\n    hosts: [\"other-*\"]\n",
	})

	err := h.reconcile()
	if err == nil {
		t.Fatal("a reconcile with invalid stacks reported no error")
	}
	if strings.Contains(err.Error(), elsewhere) {
		t.Errorf("the stack for other hosts was loaded here: %v", err)
	}
	for name, file := range map[string]string{zero: "/dev/zero", shadow: "/etc/shadow"} {
		s := h.stackStatus(name)
		want := "stacks/" + name + "/compose.yaml:10: services.app.label_file.0: " + file + " is outside the stack folder (policy.paths_outside_stack)"
		if s.Sync != "Invalid" || s.Error != want {
			t.Errorf("stack %s: sync %s error %q; want Invalid with %q", name, s.Sync, s.Error, want)
		}
		if n := len(h.containers(name)); n != 0 {
			t.Errorf("stack %s: %d containers were created", name, n)
		}
	}
	for _, s := range h.status().Stacks {
		if s.Name == elsewhere {
			t.Errorf("the stack for other hosts has a status here: %+v", s)
		}
	}
	if s := h.stackStatus(good); s.Sync != "Synced" || len(h.containers(good)) != 1 {
		t.Fatalf("the good stack beside them: %+v, containers %v", s, h.containers(good))
	}

	// The daemon is alive and converges the next revision.
	before := h.containers(good)
	next := h.repo.Commit(t, "change the good stack", map[string]string{
		"stacks/" + good + "/compose.yaml": simpleStack(h.image, "    environment:\n      NEXT: \"1\""),
	})
	if err := h.reconcile(); err == nil || !strings.Contains(err.Error(), zero) {
		t.Fatalf("the second reconcile: %v; want the zero stack still invalid", err)
	}
	s := h.stackStatus(good)
	if s.Sync != "Synced" || s.Revision != next || mapsEqual(before, h.containers(good)) {
		t.Fatalf("the good stack did not converge to %s: %+v, containers %v (before %v)", next, s, h.containers(good), before)
	}
}
