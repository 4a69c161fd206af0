package fleet

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"go.yaml.in/yaml/v3"

	"github.com/gitopsd/gitopsd/internal/stack"
)

// TestForStack: a stack's x-gitopsd.rollout replaces fleet.yaml's; without
// one the fleet's holds; a mistake is pinned to the file of the stack that
// holds it, the host overlay included, and to its line.
func TestForStack(t *testing.T) {
	dir := t.TempDir()
	write := func(name, text string) (string, map[string]any) {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
			t.Fatal(err)
		}
		var m map[string]any
		if err := yaml.Unmarshal([]byte(text), &m); err != nil {
			t.Fatal(err)
		}
		x, _ := m["x-gitopsd"].(map[string]any)
		return p, x
	}
	base := &Rollout{Waves: []Wave{{Name: "all", Kind: SelectAll}}}
	plain, _ := write("compose.yaml", "services:\n  app: {image: a}\n")
	if r, err := ForStack(&stack.Stack{Name: "web", Files: []string{plain}}, base); r != base || err != nil {
		t.Errorf("no override: %v, %v", r, err)
	}
	_, raw := write("own.yaml", "services:\n  app: {image: a}\nx-gitopsd:\n  rollout:\n    waves: [{name: first, percent: 5}, {name: rest}]\n    soak: 2m\n")
	r, err := ForStack(&stack.Stack{Name: "web", Files: []string{plain}, Options: stack.Options{Raw: raw}}, base)
	if err != nil || len(r.Waves) != 2 || r.Waves[0].Percent != 5 || r.Soak != 2*time.Minute {
		t.Errorf("override: %+v, %v", r, err)
	}
	overlay, raw := write("compose.edge-01.yaml", "x-gitopsd:\n  rollout:\n    waves:\n      - {name: first, percent: 5}\n      - {name: first}\n")
	_, err = ForStack(&stack.Stack{Name: "web", Files: []string{plain, overlay}, Options: stack.Options{Raw: raw}}, base)
	if err == nil || !strings.HasPrefix(err.Error(), `stacks/web/compose.edge-01.yaml:5: x-gitopsd.rollout.waves.1.name: duplicate wave name "first" (first at line 4)`) {
		t.Errorf("error in the overlay: %v", err)
	}
}
