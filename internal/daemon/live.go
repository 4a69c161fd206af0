package daemon

import (
	"fmt"
	"os"
	"path/filepath"
)

// linkLive points state_dir/live/stacks/<name> at the stacks of a checkout
// and returns state_dir/live, the folder stacks are loaded from.
//
// Why: Compose resolves relative paths (bind mounts, env files) against the
// stack's folder, and those paths enter the config hash. Loaded straight
// from checkouts/<sha>/, every commit would change every such hash and
// recreate containers whose files did not change, and pruning an old
// checkout would pull the ground from under their bind mounts. Through the
// stable link the paths stay the same across revisions, as they do for a
// user who runs `git pull && docker compose up -d` in one folder.
//
// pinned maps a stack to another checkout to link instead: a stack whose
// head failed its gate, or that the fleet's rollout holds, stays on the
// files of the revision it runs, so bind mounts never show a running
// container the files of a revision it refused or has not taken yet.
func linkLive(stateDir, checkout string, pinned map[string]string) (string, error) {
	live := filepath.Join(stateDir, "live")
	links := filepath.Join(live, "stacks")
	if err := os.MkdirAll(links, 0o750); err != nil {
		return "", fmt.Errorf("live view: %w", err)
	}
	want := map[string]string{}
	entries, err := os.ReadDir(filepath.Join(checkout, "stacks"))
	if err != nil && !os.IsNotExist(err) {
		return "", fmt.Errorf("live view: %w", err)
	}
	for _, e := range entries {
		if e.IsDir() {
			want[e.Name()] = filepath.Join(checkout, "stacks", e.Name())
		}
	}
	for name, other := range pinned {
		if _, ok := want[name]; ok {
			want[name] = filepath.Join(other, "stacks", name)
		}
	}
	have, err := os.ReadDir(links)
	if err != nil {
		return "", fmt.Errorf("live view: %w", err)
	}
	for _, e := range have {
		if _, ok := want[e.Name()]; !ok {
			if err := os.RemoveAll(filepath.Join(links, e.Name())); err != nil {
				return "", fmt.Errorf("live view: %w", err)
			}
		}
	}
	for name, target := range want {
		if err := pointLink(filepath.Join(links, name), target); err != nil {
			return "", err
		}
	}
	return live, nil
}

// relinkLive points the live view of one stack at its folder in checkout,
// leaving every other stack's link alone: a reconcile moves a stack to
// another revision's files (a rollback, the rollout's hold and release)
// without undoing what it decided for the others.
func relinkLive(stateDir, checkout, name string) error {
	return pointLink(filepath.Join(stateDir, "live", "stacks", name), filepath.Join(checkout, "stacks", name))
}

// pointLink points link at target, atomically: a crash, or a container
// that starts meanwhile, sees the old link or the new one.
func pointLink(link, target string) error {
	if cur, err := os.Readlink(link); err == nil && cur == target {
		return nil
	}
	tmp := link + ".tmp"
	_ = os.Remove(tmp)
	if err := os.Symlink(target, tmp); err != nil {
		return fmt.Errorf("live view: %w", err)
	}
	if err := os.Rename(tmp, link); err != nil {
		return fmt.Errorf("live view: %w", err)
	}
	return nil
}
