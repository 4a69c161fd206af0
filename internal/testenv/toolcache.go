package testenv

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
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

// buildFromProxy builds the package pkg (a folder relative to the module's
// root) of module@version into bin: the module is downloaded from the Go
// module proxy and built in place, with its own go.mod and go.sum, outside
// this repository's module and workspace, so replace directives in its
// go.mod apply (`go install pkg@version` refuses them). The binary is
// stripped, as a release build would be.
func buildFromProxy(dir, bin, module, version, pkg string) error {
	work, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		return fmt.Errorf("create build folder: %w", err)
	}
	defer os.RemoveAll(work)
	env := append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=", "GO111MODULE=on")
	dl := exec.Command("go", "mod", "download", "-json", module+"@"+version)
	dl.Dir, dl.Env = work, env
	out, dlErr := dl.Output()
	// -json describes a failed download too, in its Error field.
	var mod struct{ Dir, Error string }
	if err := json.Unmarshal(out, &mod); err != nil || mod.Error != "" || mod.Dir == "" || dlErr != nil {
		why := mod.Error
		if why == "" {
			why = fmt.Sprintf("%v %v %s", dlErr, err, out)
		}
		return fmt.Errorf("go mod download %s@%s: %s", module, version, why)
	}
	tmp := filepath.Join(work, filepath.Base(bin))
	build := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", tmp, pkg)
	build.Dir, build.Env = mod.Dir, env
	if out, err := build.CombinedOutput(); err != nil {
		return fmt.Errorf("go build %s/%s@%s: %w\n%s", module, pkg, version, err, out)
	}
	if err := os.Rename(tmp, bin); err != nil {
		return fmt.Errorf("install %s: %w", filepath.Base(bin), err)
	}
	return nil
}
