package testenv

import (
	"os"
	"os/exec"
	"testing"
)

// NeedTool returns the path of a command-line tool a test runs (promtool,
// systemd-analyze, zstd, ssh-keygen, gpg...), found in PATH. Without it the
// test skips on a workstation, with the command that installs the tool, and
// fails under CI=true, where a skipped test would be a test not run:
// scripts/test-tools.sh (run by make test and .ci/run) installs them all.
// pkg is the Debian package that provides the tool.
func NeedTool(t testing.TB, tool, pkg string) string {
	t.Helper()
	path, err := exec.LookPath(tool)
	if err == nil {
		return path
	}
	msg := tool + " is missing: install it with `apt-get install " + pkg + "` (as root, scripts/test-tools.sh does)"
	if os.Getenv("CI") == "true" {
		t.Fatal(msg)
	}
	t.Skip(msg)
	return ""
}
