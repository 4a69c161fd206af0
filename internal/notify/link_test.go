package notify

import (
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// TestNoTemplateExecutor: a program using notify links neither
// text/template's executor nor reflect's method lookup by name, which
// would make the linker keep every exported method in the binary
// (6.6 MB in gitopsd under shoutrrr's router).
func TestNoTemplateExecutor(t *testing.T) {
	bin := filepath.Join(t.TempDir(), "linkcheck")
	build := exec.Command("go", "build", "-o", bin, "./testdata/linkcheck")
	build.Env = append(build.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	out, err := exec.Command("go", "tool", "nm", bin).Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "MethodByName") || strings.Contains(line, "text/template.(*state)") {
			t.Errorf("linked: %s", strings.TrimSpace(line))
		}
	}
}
