package main

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestSystemdUnitVerifies: systemd-analyze accepts systemd/gitopsd.service
// (pointed at the binary under test), and the unit keeps the promises the
// daemon relies on.
func TestSystemdUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Fatal("systemd-analyze is missing: install Debian's systemd package (.ci/run does)")
	}
	unit, err := os.ReadFile(filepath.Join("..", "..", "systemd", "gitopsd.service"))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"Type=notify", "After=docker.service", "Restart=always", "WatchdogSec=", "StateDirectory=gitopsd",
		"RuntimeDirectory=gitopsd", "ConfigurationDirectory=gitopsd", "ProtectSystem=strict", "ProtectHome=true", "PrivateTmp=true",
		"NoNewPrivileges=true", "RestrictAddressFamilies=", "ReadWritePaths=/run/docker.sock"} {
		if !strings.Contains(string(unit), want) {
			t.Errorf("the unit lacks %s", want)
		}
	}
	dir := t.TempDir()
	local := strings.ReplaceAll(string(unit), "/usr/bin/gitopsd", binary)
	path := filepath.Join(dir, "gitopsd.service")
	if err := os.WriteFile(path, []byte(local), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || len(strings.TrimSpace(string(out))) > 0 {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
}
