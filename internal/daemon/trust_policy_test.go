package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/gitopsd/gitopsd/internal/config"
	"github.com/gitopsd/gitopsd/internal/testenv"
)

// bindVolumeStack is the test app serving on port, with a named volume of
// the local driver whose driver_opts bind the host folder device.
func bindVolumeStack(image string, port int, device string) string {
	return fmt.Sprintf(`services:
  app:
    image: %[1]s
    pull_policy: never
    ports: ["127.0.0.1:%[2]d:8080"]
    volumes: ["hostdir:/hostdir:ro"]
    deploy:
      update_config:
        monitor: 1s
    labels: {%[4]s: "1"}
networks:
  default:
    labels: {%[4]s: "1"}
volumes:
  hostdir:
    driver: local
    driver_opts:
      type: none
      o: bind
      device: %[3]s
    labels: {%[4]s: "1"}
`, image, port, device, testenv.TestLabel)
}

// lineOf is the 1-based line of the first line of text holding s.
func lineOf(text, s string) int {
	for i, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			return i + 1
		}
	}
	return 0
}

// TestStrictRefusesBindVolumes: a named volume of the local driver whose
// driver_opts bind a host folder is a bind. Under the strict preset one of
// /etc makes its stack Invalid, naming the file, line and rule, and
// nothing of it is created, neither container nor volume; one of a folder
// bind_paths allows deploys beside it. Under the default policy, which
// allows what docker compose allows, a bind volume deploys and the
// container reads the host folder through it.
func TestStrictRefusesBindVolumes(t *testing.T) {
	h := newHarness(t, nil)
	allowed, outside := t.TempDir(), t.TempDir()
	for dir, text := range map[string]string{allowed: "allowed", outside: "outside"} {
		if err := os.WriteFile(filepath.Join(dir, "note"), []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	h.cfg.Policy = config.Policy{Preset: config.PresetStrict, BindPaths: []string{allowed}}
	h.stop()
	h.start()
	etc, out, ok := testenv.Project(t, "bindvol-etc"), testenv.Project(t, "bindvol-out"), testenv.Project(t, "bindvol-ok")
	etcPort, outPort, okPort := testenv.FreePort(t), testenv.FreePort(t), testenv.FreePort(t)
	etcFile := bindVolumeStack(h.image, etcPort, "/etc")
	h.repo.Commit(t, "bind volumes", map[string]string{
		"stacks/" + etc + "/compose.yaml": etcFile,
		"stacks/" + out + "/compose.yaml": bindVolumeStack(h.image, outPort, outside),
		"stacks/" + ok + "/compose.yaml":  bindVolumeStack(h.image, okPort, allowed),
	})
	if err := h.reconcile(); err == nil {
		t.Fatal("a reconcile with a stack binding /etc through a volume reported no error")
	}

	want := map[string]string{
		etc: fmt.Sprintf("stacks/%s/compose.yaml:%d: volumes.hostdir.driver_opts.device: volume hostdir: driver_opts that mount /etc (outside the allowed bind paths %s) is not allowed on this host (policy.bind_paths)",
			etc, lineOf(etcFile, "device:"), allowed),
		out: "volume hostdir: driver_opts that mount " + outside + " (outside the allowed bind paths " + allowed + ") is not allowed on this host (policy.bind_paths)",
	}
	for name, msg := range want {
		s := h.stackStatus(name)
		if s.Sync != "Invalid" || !strings.Contains(s.Error, msg) {
			t.Errorf("stack %s: sync %s error %q; want Invalid with %q", name, s.Sync, s.Error, msg)
		}
		if n := len(h.containers(name)); n != 0 {
			t.Errorf("stack %s: %d containers were created", name, n)
		}
		_, err := h.docker.VolumeInspect(context.Background(), name+"_hostdir", client.VolumeInspectOptions{})
		if !cerrdefs.IsNotFound(err) {
			t.Errorf("stack %s: its bind volume was created (inspect: %v)", name, err)
		}
	}
	if s := h.stackStatus(ok); s.Sync != "Synced" {
		t.Fatalf("a bind volume of a folder bind_paths allows: %+v", s)
	}
	if got := getFile(t, okPort, "/hostdir/note"); got != "allowed" {
		t.Fatalf("the allowed bind volume shows %q", got)
	}

	// The default policy, without the /etc stack: the other bind volume
	// deploys as docker compose would deploy it.
	h.repo.Commit(t, "drop the /etc stack", nil, "stacks/"+etc)
	h.cfg.Policy = config.Policy{}
	h.stop()
	h.start()
	h.mustReconcile()
	if s := h.stackStatus(out); s.Sync != "Synced" {
		t.Fatalf("a bind volume under the default policy: %+v", s)
	}
	if got := getFile(t, outPort, "/hostdir/note"); got != "outside" {
		t.Fatalf("the bind volume under the default policy shows %q", got)
	}
}

// TestStrictRefusesPrivilegedHooks: a post_start or pre_stop hook runs in
// the service's container, and privileged: true on it hands that process
// every capability and device of the host. Under the strict preset it
// makes the stack Invalid, naming the file, line and rule, and no
// container is created; under the default policy the same file deploys
// and its hook runs.
func TestStrictRefusesPrivilegedHooks(t *testing.T) {
	h := newHarness(t, nil)
	h.cfg.Policy = config.Policy{Preset: config.PresetStrict}
	h.stop()
	h.start()
	post, pre := testenv.Project(t, "privhook-post"), testenv.Project(t, "privhook-pre")
	postPort, prePort := testenv.FreePort(t), testenv.FreePort(t)
	// hookStack's hooks, made privileged: post_start's first, pre_stop's
	// on its own.
	postFile := strings.Replace(hookStack(h.image, postPort, "v1", false), `"/started", "v1"]}]`, `"/started", "v1"], privileged: true}]`, 1)
	preFile := strings.Replace(hookStack(h.image, prePort, "v1", false), `"stopped v1"]}]`, `"stopped v1"], privileged: true}]`, 1)
	if !strings.Contains(postFile, "privileged: true") || !strings.Contains(preFile, "privileged: true") {
		t.Fatalf("the hooks were not made privileged:\n%s\n%s", postFile, preFile)
	}
	h.repo.Commit(t, "privileged hooks", map[string]string{
		"stacks/" + post + "/compose.yaml": postFile,
		"stacks/" + pre + "/compose.yaml":  preFile,
	})
	if err := h.reconcile(); err == nil {
		t.Fatal("a reconcile with privileged hooks reported no error")
	}
	want := map[string]string{
		post: fmt.Sprintf("stacks/%s/compose.yaml:%d: services.web.post_start.0.privileged: service web: a post_start hook with privileged: true is not allowed on this host (policy.privileged)", post, lineOf(postFile, "post_start:")),
		pre:  fmt.Sprintf("stacks/%s/compose.yaml:%d: services.web.pre_stop.0.privileged: service web: a pre_stop hook with privileged: true is not allowed on this host (policy.privileged)", pre, lineOf(preFile, "pre_stop:")),
	}
	for name, msg := range want {
		s := h.stackStatus(name)
		if s.Sync != "Invalid" || s.Error != msg {
			t.Errorf("stack %s: sync %s error %q; want Invalid with %q", name, s.Sync, s.Error, msg)
		}
		if n := len(h.containers(name)); n != 0 {
			t.Errorf("stack %s: %d containers were created", name, n)
		}
	}

	// The default policy lets both through to the engine. pre_stop runs
	// only before a stop, so its stack deploys; post_start runs now, and an
	// engine that may not hand an exec every capability (one itself in a
	// container, as on some CI hosts) refuses it there, which fails the
	// stack's deployment rather than making it Invalid.
	h.cfg.Policy = config.Policy{}
	h.stop()
	h.start()
	err := h.reconcile()
	if s := h.stackStatus(pre); s.Sync != "Synced" {
		t.Fatalf("the pre_stop stack under the default policy: %+v", s)
	}
	s := h.stackStatus(post)
	switch {
	case err == nil && s.Sync == "Synced":
		if got := getFile(t, postPort, "/started"); got != "v1" {
			t.Fatalf("the privileged post_start hook wrote %q, want v1", got)
		}
	case err != nil && strings.Contains(err.Error(), "unable to apply caps") && s.Sync == "Failed":
		t.Logf("this engine refuses a privileged exec: %v", err)
	default:
		t.Fatalf("the post_start stack under the default policy: reconcile %v, status %+v", err, s)
	}
}
