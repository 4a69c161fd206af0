package daemon

import (
	"os"
	"path/filepath"
	"testing"
)

func TestLinkLiveFollowsCheckouts(t *testing.T) {
	state := t.TempDir()
	mk := func(rev string, stacks ...string) string {
		dir := filepath.Join(state, "checkouts", rev)
		for _, s := range stacks {
			if err := os.MkdirAll(filepath.Join(dir, "stacks", s), 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, "stacks", s, "compose.yaml"), []byte(rev), 0o644); err != nil {
				t.Fatal(err)
			}
		}
		return dir
	}
	read := func(live, stack string) string {
		b, err := os.ReadFile(filepath.Join(live, "stacks", stack, "compose.yaml"))
		if err != nil {
			return ""
		}
		return string(b)
	}

	live, err := linkLive(state, mk("r1", "a", "b"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if read(live, "a") != "r1" || read(live, "b") != "r1" {
		t.Fatalf("after r1: a=%q b=%q", read(live, "a"), read(live, "b"))
	}
	live2, err := linkLive(state, mk("r2", "a"), nil)
	if err != nil {
		t.Fatal(err)
	}
	if live2 != live {
		t.Fatalf("the live folder moved: %s -> %s", live, live2)
	}
	if read(live, "a") != "r2" {
		t.Fatalf("a not at r2: %q", read(live, "a"))
	}
	if _, err := os.Lstat(filepath.Join(live, "stacks", "b")); !os.IsNotExist(err) {
		t.Fatalf("b left the revision but its link remains: %v", err)
	}
}
