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

// WatchLocal calls changed when the branch of a repository on this machine
// may have moved (its ref file or packed-refs was written), so a local push
// converges at once instead of at the next poll. Bursts are coalesced
// (200 ms). It returns when ctx ends, or at once with an error when the
// repository cannot be watched: polls still find the change then.
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
	var settle <-chan time.Time
	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return nil
			}
			base := filepath.Base(ev.Name)
			// git writes <ref>.lock and renames it over <ref>.
			if base == refName || base == refName+".lock" || base == packed || base == packed+".lock" {
				settle = time.After(200 * time.Millisecond)
			}
		case err, ok := <-w.Errors:
			if !ok {
				return nil
			}
			log.Warn("watching the local repository", "repo", repo, "err", err)
		case <-settle:
			settle = nil
			changed()
		}
	}
}
