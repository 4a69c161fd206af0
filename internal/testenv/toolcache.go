package testenv

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// cachedTool returns the path of a test server's binary, kept in the user's
// cache folder as <name>-<version>/<binary> and built by build(dir, bin) the
// first time. A file lock makes parallel test processes build it once; what
// takes a while is said in the test's log.
func cachedTool(t testing.TB, name, version, binary string, build func(dir, bin string) error) (string, error) {
	cache, err := os.UserCacheDir()
	if err != nil {
		return "", fmt.Errorf("find a cache folder: %w", err)
	}
	dir := filepath.Join(cache, "gitopsd-test", name+"-"+version)
	bin := filepath.Join(dir, binary)
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", fmt.Errorf("create %s: %w", dir, err)
	}
	lock, err := os.OpenFile(filepath.Join(dir, ".build.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return "", fmt.Errorf("open build lock: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return "", fmt.Errorf("take build lock: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	// Another process may have built it while we waited for the lock.
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	t.Logf("building %s %s from the Go module proxy into %s (takes minutes the first time)", name, version, dir)
	start := time.Now()
	if err := build(dir, bin); err != nil {
		return "", err
	}
	t.Logf("built %s %s in %v", name, version, time.Since(start).Round(time.Second))
	return bin, nil
}
