package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"
)

// TestDebInstallsAndRemoves installs the amd64 .deb that `make package`
// built on this machine: gitopsd runs, the unit, config, state folder, man
// page, completions and the gitopsd group are there; a reinstall keeps an
// edited config; removal takes the binary and leaves config and state.
// It changes the machine, so only `make test-package` (CI) runs it.
func TestDebInstallsAndRemoves(t *testing.T) {
	if os.Getenv("GITOPSD_TEST_PACKAGE") != "1" {
		t.Skip("installs a package on this machine: make test-package runs it (CI does)")
	}
	debs, _ := filepath.Glob(filepath.Join("..", "..", "dist", "gitopsd_*_amd64.deb"))
	if len(debs) == 0 {
		t.Fatal("no dist/gitopsd_*_amd64.deb: run make package")
	}
	sort.Strings(debs)
	deb := debs[len(debs)-1]
	run := func(name string, args ...string) string {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	t.Cleanup(func() {
		_ = exec.Command("dpkg", "--purge", "gitopsd").Run()
		_ = os.Remove("/var/lib/gitopsd/test-marker")
	})

	run("dpkg", "-i", deb)
	if out := run("/usr/bin/gitopsd", "version"); !strings.HasPrefix(out, "gitopsd ") {
		t.Fatalf("gitopsd version: %q", out)
	}
	for _, path := range []string{
		"/lib/systemd/system/gitopsd.service", "/etc/gitopsd/gitopsd.yaml", "/var/lib/gitopsd",
		"/usr/share/man/man1/gitopsd.1", "/usr/share/man/man1/gitopsd-status.1",
		"/usr/share/bash-completion/completions/gitopsd", "/usr/share/gitopsd/monitoring/gitopsd-alerts.yaml",
	} {
		if _, err := os.Stat(path); err != nil {
			t.Errorf("after install: %v", err)
		}
	}
	run("getent", "group", "gitopsd")

	// An edited config survives a reinstall (an upgrade does the same).
	edited := "# edited by the operator\n"
	f, err := os.OpenFile("/etc/gitopsd/gitopsd.yaml", os.O_APPEND|os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	f.WriteString(edited)
	f.Close()
	if err := os.WriteFile("/var/lib/gitopsd/test-marker", []byte("state"), 0o600); err != nil {
		t.Fatal(err)
	}
	run("dpkg", "-i", deb)
	if b, _ := os.ReadFile("/etc/gitopsd/gitopsd.yaml"); !strings.Contains(string(b), edited) {
		t.Fatalf("the reinstall replaced the edited config:\n%s", b)
	}

	run("dpkg", "-r", "gitopsd")
	if _, err := os.Stat("/usr/bin/gitopsd"); !os.IsNotExist(err) {
		t.Fatalf("after dpkg -r the binary is still there: %v", err)
	}
	if b, err := os.ReadFile("/etc/gitopsd/gitopsd.yaml"); err != nil || !strings.Contains(string(b), edited) {
		t.Fatalf("dpkg -r took the config: %v", err)
	}
	if _, err := os.Stat("/var/lib/gitopsd/test-marker"); err != nil {
		t.Fatalf("dpkg -r took the state: %v", err)
	}
}
