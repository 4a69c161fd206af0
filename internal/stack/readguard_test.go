package stack

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gitopsd/gitopsd/internal/policy"
)

// loadWithin loads a stack in its own goroutine and fails the test when it
// does not return in bound: a loader that opens a FIFO waits for a writer
// for ever, which must fail the test rather than hang it.
func loadWithin(t *testing.T, dir, name string, h Host) (*Stack, error) {
	t.Helper()
	type result struct {
		st  *Stack
		err error
	}
	done := make(chan result, 1)
	go func() {
		st, err := Load(context.Background(), dir, name, h)
		done <- result{st, err}
	}()
	select {
	case r := <-done:
		return r.st, r.err
	case <-time.After(time.Minute):
		t.Fatalf("loading stack %s did not return (it waits on a file it opened)", name)
		return nil, nil
	}
}

func strictHost() Host {
	rules := policy.Strict()
	return Host{Name: host.Name, Labels: host.Labels, Policy: &rules}
}

func openHost() Host {
	yes := true
	rules := policy.Resolve(policy.Settings{PathsOutsideStack: &yes})
	return Host{Name: host.Name, Labels: host.Labels, Policy: &rules}
}

// aliasBombYAML is a "billion laughs" document: 9^9 strings from 9 lines.
func aliasBombYAML() string {
	var b strings.Builder
	b.WriteString("x-a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n")
	prev := "a"
	for _, name := range []string{"b", "c", "d", "e", "f", "g", "h", "i"} {
		b.WriteString("x-" + name + ": &" + name + " [" + strings.Repeat("*"+prev+", ", 8) + "*" + prev + "]\n")
		prev = name
	}
	b.WriteString("services:\n  base:\n    image: x\n")
	return b.String()
}

// Issue 15, holes 3, 4 and 5: every file the loader reads (label_file,
// env_file, extends, include, secrets and configs) is judged before
// compose-go opens it: inside the stack folder unless the policy allows
// otherwise, a regular file, under its size limit, and, when parsed as
// YAML, whatever its name, free of alias bombs. Each error names the file.
func TestEveryFileTheLoaderReadsIsJudgedFirst(t *testing.T) {
	web := "services:\n  web:\n    image: x\n"
	bigConfig := strings.Repeat("c", MaxObjectBytes+1)
	dir := repo(t, map[string]string{
		"stacks/labelzero/compose.yaml":   web + "    label_file: [/dev/zero]\n",
		"stacks/labelshadow/compose.yaml": web + "    label_file: [/etc/shadow]\n",
		"stacks/labelup/compose.yaml":     web + "    label_file: ../../outside.labels\n",
		"stacks/labelbig/compose.yaml":    web + "    label_file: big.labels\n",
		"stacks/labelbig/big.labels":      "A=" + strings.Repeat("y", MaxFileBytes) + "\n",
		"stacks/labelfifo/compose.yaml":   web + "    label_file: pipe.labels\n",
		"stacks/labelok/compose.yaml":     web + "    label_file: app.labels\n",
		"stacks/labelok/app.labels":       "team=core\n",
		"stacks/extendsbomb/compose.yaml": "services:\n  web:\n    extends: {file: base.txt, service: base}\n",
		"stacks/extendsbomb/base.txt":     aliasBombYAML(),
		"stacks/extendsbig/compose.yaml":  "services:\n  web:\n    extends: {file: sub/base.conf, service: base}\n",
		"stacks/extendsbig/sub/base.conf": "# " + strings.Repeat("x", MaxFileBytes) + "\nservices:\n  base:\n    image: x\n",
		"stacks/includebomb/compose.yaml": "include: [lib.txt]\n" + web,
		"stacks/includebomb/lib.txt":      aliasBombYAML(),
		"stacks/configbig/compose.yaml":   web + "    configs: [big]\nconfigs:\n  big: {file: ./big.bin}\n",
		"stacks/configbig/big.bin":        bigConfig,
		"stacks/secretbig/compose.yaml":   web + "    secrets: [big]\nsecrets:\n  big: {file: ./big.bin}\n",
		"stacks/secretbig/big.bin":        bigConfig,
		// A config may be bigger than a compose file.
		"stacks/configok/compose.yaml": web + "    configs: [bundle]\nconfigs:\n  bundle: {file: ./bundle.pem}\n",
		"stacks/configok/bundle.pem":   strings.Repeat("p", 3<<20),
		"outside.labels":               "a=b\n",
	})
	if err := syscall.Mkfifo(filepath.Join(dir, "stacks", "labelfifo", "pipe.labels"), 0o644); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ stack, file, msg string }{
		{"labelzero", "stacks/labelzero/compose.yaml", "services.web.label_file.0: /dev/zero is outside the stack folder (policy.paths_outside_stack)"},
		{"labelshadow", "stacks/labelshadow/compose.yaml", "services.web.label_file.0: /etc/shadow is outside the stack folder (policy.paths_outside_stack)"},
		{"labelup", "stacks/labelup/compose.yaml", "services.web.label_file.0: outside.labels is outside the stack folder"},
		{"labelbig", "stacks/labelbig/big.labels", "over the limit of 1048576"},
		{"labelfifo", "stacks/labelfifo/pipe.labels", "not a regular file (a device, FIFO or socket)"},
		{"extendsbomb", "stacks/extendsbomb/base.txt", "YAML aliases expand this file to more than 50000 nodes"},
		{"extendsbig", "stacks/extendsbig/sub/base.conf", "over the limit of 1048576"},
		{"includebomb", "stacks/includebomb/lib.txt", "YAML aliases expand this file to more than 50000 nodes"},
		{"configbig", "stacks/configbig/big.bin", "file is 8388609 bytes, over the limit of 8388608"},
		{"secretbig", "stacks/secretbig/big.bin", "file is 8388609 bytes, over the limit of 8388608"},
	}
	for _, h := range []Host{host, strictHost()} {
		for _, c := range cases {
			_, err := loadWithin(t, dir, c.stack, h)
			var e *Error
			if !errors.As(err, &e) || e.Stack != c.stack {
				t.Errorf("stack %s: %v; want a *stack.Error of that stack", c.stack, err)
				continue
			}
			if e.File != c.file || !strings.Contains(e.Msg, c.msg) {
				t.Errorf("stack %s: %q; want it on %s, saying %q", c.stack, e.Error(), c.file, c.msg)
			}
		}
	}
	for _, name := range []string{"labelok", "configok"} {
		if _, err := loadWithin(t, dir, name, strictHost()); err != nil {
			t.Errorf("stack %s: %v", name, err)
		}
	}

	// A policy that lets stacks read outside their folder still has them
	// read regular files only.
	open := repo(t, map[string]string{
		"stacks/label/compose.yaml":   web + "    label_file: [/dev/zero]\n",
		"stacks/env/compose.yaml":     web + "    env_file: /dev/zero\n",
		"stacks/extends/compose.yaml": "services:\n  web:\n    extends: {file: /dev/zero, service: base}\n",
		"stacks/config/compose.yaml":  web + "    configs: [c]\nconfigs:\n  c: {file: /dev/zero}\n",
		"stacks/dotenv/compose.yaml":  web,
		"stacks/shadow/compose.yaml":  web + "    label_file: [/etc/shadow]\n",
	})
	if err := os.Symlink("/dev/zero", filepath.Join(open, "stacks", "dotenv", ".env")); err != nil {
		t.Fatal(err)
	}
	for name, file := range map[string]string{"label": "/dev/zero", "env": "/dev/zero", "extends": "/dev/zero", "config": "/dev/zero", "dotenv": "stacks/dotenv/.env"} {
		_, err := loadWithin(t, open, name, openHost())
		var e *Error
		if !errors.As(err, &e) || e.File != file || e.Msg != notRegularMsg {
			t.Errorf("stack %s with paths_outside_stack: %v; want %s refused as not a regular file", name, err, file)
		}
	}
	if _, err := loadWithin(t, open, "shadow", openHost()); err != nil {
		t.Errorf("with paths_outside_stack a regular file outside the folder is the operator's to allow: %v", err)
	}
}

// Issue 15, hole 3: a host passes over a stack that targets other hosts
// without reading its other files: a label_file, env_file or extends file
// that would fail to load (here: missing) costs nothing where the stack
// does not run, and is reported where it does.
func TestStacksForOtherHostsAreNotRead(t *testing.T) {
	away := "x-gitopsd:\n  targets:\n    hosts: [\"${AWAY:-other}-*\"]\n"
	dir := repo(t, map[string]string{
		"stacks/label/compose.yaml":   "services:\n  web:\n    image: x\n    label_file: [missing.labels]\n" + away,
		"stacks/env/compose.yaml":     "services:\n  web:\n    image: x\n    env_file: [missing.env]\n" + away,
		"stacks/extends/compose.yaml": "services:\n  web:\n    extends: {file: missing.yaml, service: base}\n" + away,
		"stacks/here/compose.yaml":    "services:\n  web:\n    image: x\n",
		// x-gitopsd in two files is merged by compose: the whole load decides.
		"stacks/merged/compose.yaml": "services:\n  web:\n    image: x\n    label_file: [missing.labels]\n" + away,
		"stacks/merged/more.yaml":    "x-gitopsd:\n  drift: report\n",
		"stacks/merged/.env":         "COMPOSE_FILE=compose.yaml:more.yaml\n",
	})
	res := LoadAll(context.Background(), dir, host)
	if got := strings.Join(res.Untargeted, ","); got != "env,extends,label" {
		t.Errorf("untargeted %q, want env,extends,label (invalid: %v)", got, res.Invalid)
	}
	if len(res.Stacks) != 1 || res.Stacks[0].Name != "here" {
		t.Errorf("stacks %v, want here", res.Stacks)
	}
	if err := res.Invalid["merged"]; err == nil || !strings.Contains(err.Error(), "missing.labels") {
		t.Errorf("merged: %v; want the whole load's error about the missing label file", err)
	}
	// On a host the stacks are for, the files are read and judged.
	other := Host{Name: "other-1"}
	res = LoadAll(context.Background(), dir, other)
	for _, name := range []string{"label", "env", "extends"} {
		if res.Invalid[name] == nil {
			t.Errorf("stack %s on a host it targets: not invalid (untargeted %v)", name, res.Untargeted)
		}
	}
	// Through the cache, as the daemon loads: a stack passed over is no
	// answer to a caller that wants it whole.
	var c Cache
	if res := c.LoadAll(context.Background(), dir, host); len(res.Untargeted) != 3 {
		t.Fatalf("through the cache: untargeted %v invalid %v", res.Untargeted, res.Invalid)
	}
	if _, err := c.Load(context.Background(), dir, "label", host); err == nil || !strings.Contains(err.Error(), "missing.labels") {
		t.Errorf("a whole load after LoadAll passed the stack over: %v", err)
	}
}

// Issue 15, hole 12: the stack folders must be the repository's own. A
// stacks/ that is a symlink, or a stack folder that is one, is refused,
// naming the path, so that binds into it cannot count as "inside the
// stack" while they reach a host folder. The daemon's live view, whose
// stack folders are links to a checkout's own folders, still loads.
func TestSymlinkedStackFoldersAreRefused(t *testing.T) {
	bind := "services:\n  web:\n    image: x\n    volumes:\n      - ./data:/data\n"
	hostDir := repo(t, map[string]string{"web/compose.yaml": bind, "stacks/web/compose.yaml": bind})

	linkedTop := t.TempDir()
	if err := os.Symlink(hostDir, filepath.Join(linkedTop, "stacks")); err != nil {
		t.Fatal(err)
	}
	res := LoadAll(context.Background(), linkedTop, strictHost())
	if res.Err == nil || !strings.Contains(res.Err.Error(), "stacks: a symlink, to "+hostDir) {
		t.Errorf("a symlinked stacks/: %v (stacks %v)", res.Err, res.Stacks)
	}
	e := loadErr(t, linkedTop, "web", strictHost())
	if e.File != "stacks" || !strings.Contains(e.Msg, "a symlink, to "+hostDir) {
		t.Errorf("a symlinked stacks/: %v", e)
	}

	linkedStack := repo(t, map[string]string{"stacks/ok/compose.yaml": bind, "elsewhere/web/compose.yaml": bind})
	for name, target := range map[string]string{
		"web":   filepath.Join(hostDir, "web"),
		"rel":   "../elsewhere/web",
		"other": filepath.Join(linkedStack, "stacks", "ok"),
		"shape": filepath.Join(hostDir, "stacks", "web") + "/", // not the live view's own link
	} {
		if err := os.Symlink(target, filepath.Join(linkedStack, "stacks", name)); err != nil {
			t.Fatal(err)
		}
	}
	res = LoadAll(context.Background(), linkedStack, strictHost())
	if len(res.Stacks) != 1 || res.Stacks[0].Name != "ok" {
		t.Errorf("stacks %v, want ok only (invalid %v)", res.Stacks, res.Invalid)
	}
	for _, name := range []string{"web", "rel", "other", "shape"} {
		var e *Error
		if !errors.As(res.Invalid[name], &e) || e.File != "stacks/"+name || !strings.Contains(e.Msg, "a symlink, to ") {
			t.Errorf("symlinked stack folder %s: %v", name, res.Invalid[name])
		}
	}

	// The live view: stacks/<name> links to <checkout>/stacks/<name>.
	checkout := repo(t, map[string]string{"stacks/web/compose.yaml": bind})
	live := t.TempDir()
	if err := os.MkdirAll(filepath.Join(live, "stacks"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(checkout, "stacks", "web"), filepath.Join(live, "stacks", "web")); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(context.Background(), live, "web", strictHost()); err != nil {
		t.Fatalf("the live view's link: %v", err)
	}
	// A checkout whose stacks/ is a link (a revision that made it one).
	hostile := t.TempDir()
	if err := os.Symlink(filepath.Join(hostDir, "stacks"), filepath.Join(hostile, "stacks")); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(filepath.Join(live, "stacks", "web")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(hostile, "stacks", "web"), filepath.Join(live, "stacks", "web")); err != nil {
		t.Fatal(err)
	}
	e = loadErr(t, live, "web", strictHost())
	if e.File != "stacks" || !strings.Contains(e.Msg, "a symlink, to "+filepath.Join(hostDir, "stacks")) {
		t.Errorf("a live view link into a checkout whose stacks/ is a symlink: %v", e)
	}
}
