package main

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// TestValidateStrictRefusesHostileFiles (issue 15, holes 3, 4, 5 and 12):
// `validate --strict` refuses, naming the file, every way a commit could
// make the loader read what it must not: host files as label files
// (/dev/zero would never end, /etc/shadow would become labels), a FIFO, an
// alias bomb behind a name that is not .yaml (extends and include), a
// config file over the size limit, and stack folders that are symlinks.
// A stack for other hosts is passed over without reading its files.
func TestValidateStrictRefusesHostileFiles(t *testing.T) {
	web := "services:\n  web:\n    image: example/web:1\n"
	bomb := "x-a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
	for i, c := range "bcdefghi" {
		p := "*" + string("abcdefghi"[i])
		bomb += "x-" + string(c) + ": &" + string(c) + " [" + strings.Repeat(p+", ", 8) + p + "]\n"
	}
	bomb += "services:\n  base:\n    image: x\n"
	repo := t.TempDir()
	writeFiles(t, repo, map[string]string{
		"stacks/good/compose.yaml":    web,
		"stacks/zero/compose.yaml":    web + "    label_file: [/dev/zero]\n",
		"stacks/shadow/compose.yaml":  web + "    label_file: [/etc/shadow]\n",
		"stacks/fifo/compose.yaml":    web + "    env_file: pipe.env\n",
		"stacks/extends/compose.yaml": "services:\n  web:\n    extends: {file: base.txt, service: base}\n",
		"stacks/extends/base.txt":     bomb,
		"stacks/include/compose.yaml": "include: [lib.txt]\n" + web,
		"stacks/include/lib.txt":      bomb,
		"stacks/bigconf/compose.yaml": web + "    configs: [big]\nconfigs:\n  big: {file: ./big.bin}\n",
		"stacks/bigconf/big.bin":      strings.Repeat("x", 8<<20+1),
		"stacks/elsewhere/compose.yaml": web + "    label_file: [/dev/zero]\n" +
			"x-gitopsd:\n  targets: {hosts: [\"other-*\"]}\n",
		"linked/web/compose.yaml": web + "    volumes: [./data:/data]\n",
	})
	if err := syscall.Mkfifo(filepath.Join(repo, "stacks", "fifo", "pipe.env"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(repo, "linked", "web"), filepath.Join(repo, "stacks", "linked")); err != nil {
		t.Fatal(err)
	}
	out, errOut, code := gitopsd(t, nil, "validate", repo, "--strict", "--host", "edge-1")
	if code != 1 {
		t.Fatalf("validate --strict of hostile stacks: exit %d, want 1\n%s%s", code, out, errOut)
	}
	for _, want := range []string{
		"ok       good (1 services)",
		"ok       elsewhere (not for host edge-1)",
		"invalid  zero: stacks/zero/compose.yaml:4: services.web.label_file.0: /dev/zero is outside the stack folder (policy.paths_outside_stack)",
		"invalid  shadow: stacks/shadow/compose.yaml:4: services.web.label_file.0: /etc/shadow is outside the stack folder (policy.paths_outside_stack)",
		"invalid  fifo: stacks/fifo/pipe.env: not a regular file (a device, FIFO or socket)",
		"invalid  extends: stacks/extends/base.txt:",
		"invalid  include: stacks/include/lib.txt:",
		"invalid  bigconf: stacks/bigconf/big.bin: file is 8388609 bytes, over the limit of 8388608",
		"invalid  linked: stacks/linked: a symlink, to " + filepath.Join(repo, "linked", "web"),
	} {
		if !strings.Contains(out, want+"") {
			t.Errorf("validate --strict does not say %q\n%s", want, out)
		}
	}
	for _, name := range []string{"extends", "include"} {
		if line := lineStarting(out, "invalid  "+name+": "); !strings.Contains(line, "YAML aliases expand this file to more than 50000 nodes") {
			t.Errorf("the alias bomb behind %s: %q", name, line)
		}
	}

	// A stacks/ that is a symlink out of the repository is refused whole.
	linkedTop := t.TempDir()
	if err := os.Symlink(filepath.Join(repo, "stacks"), filepath.Join(linkedTop, "stacks")); err != nil {
		t.Fatal(err)
	}
	out, errOut, code = gitopsd(t, nil, "validate", linkedTop, "--strict", "--host", "edge-1")
	if code != 1 || !strings.Contains(errOut, "stacks: a symlink, to "+filepath.Join(repo, "stacks")) {
		t.Fatalf("validate --strict of a repository whose stacks/ is a symlink: exit %d\n%s%s", code, out, errOut)
	}
}
