package source

import (
	"context"
	"log/slog"
	"os"
	"path"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// LocalPath is the folder of a source URL that names a repository on this
// machine (an absolute path or file://), "" for a remote one.
func LocalPath(url string) string {
	if p, ok := strings.CutPrefix(url, "file://"); ok {
		return p
	}
	if filepath.IsAbs(url) {
		return url
	}
	return ""
}

// watchSettle is how long after a call WatchLocal holds further changes
// of a burst (a push of many refs, a pack-refs), to call once more at its
// end.
const watchSettle = 200 * time.Millisecond

// WatchLocal calls changed when the branch of a repository on this machine
// may have moved (its ref file or packed-refs was replaced or written), so
// a local push converges at once instead of at the next poll. The first
// change calls at once: git writes <ref>.lock and renames it over <ref>,
// so the rename is the push landing, and waiting for quiet would only delay
// the sync. Changes within watchSettle of a call are coalesced into one
// more call at the end of that time, so a burst costs two calls at most
// and a branch pushed to without pause still converges. It returns when ctx
// ends, or at once with an error when the repository cannot be watched:
// polls still find the change then.
func WatchLocal(ctx context.Context, repo, branch string, log *slog.Logger, changed func()) error {
	gitDir := repo
	if fi, err := os.Stat(filepath.Join(repo, ".git")); err == nil && fi.IsDir() {
		gitDir = filepath.Join(repo, ".git") // a working copy, not a bare repository
	}
	refDir := filepath.Join(gitDir, "refs", "heads", filepath.FromSlash(path.Dir(branch)))
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return err
	}
	defer w.Close()
	for _, dir := range []string{gitDir, refDir} {
		if err := w.Add(dir); err != nil {
			return err
		}
	}
	refName, packed := filepath.Base(branch), "packed-refs"
	var settling <-chan time.Time // open for watchSettle after a call
	again := false                // a change came while settling
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			// A .lock file is a write in progress: only what lands on
			// the ref's own name, or packed-refs', moves the branch.
			if base := filepath.Base(ev.Name); base != refName && base != packed {
				continue
			}
			if settling != nil {
				again = true
				continue
			}
			changed()
			settling = time.After(watchSettle)
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			log.Warn("watching the local repository", "repo", repo, "err", err)
		case <-settling:
			settling = nil
			if again {
				again = false
				changed()
				settling = time.After(watchSettle)
			}
		}
	}
}
