// Package testenv gives tests real parts to run against: the Docker engine,
// images built FROM scratch around the test app, Compose v2, and Git
// repositories (bare, and served over smart HTTP on 127.0.0.1).
package testenv

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/client"

	"github.com/gitopsd/gitopsd/internal/engine"
)

// TestLabel is carried by every Docker object a test creates.
const TestLabel = "io.gitopsd.test"

// testappPkg is the import path of the binary that AppImage packages.
const testappPkg = "github.com/gitopsd/gitopsd/internal/testenv/testapp"

// composeVersion is built when the host lacks the compose plugin; pinned so
// every CI machine tests against the same Compose.
const composeVersion = "v2.40.3"

var docker struct {
	once sync.Once
	cli  *client.Client
	err  error
}

// Docker returns a client for the engine. It fails the test when the engine
// is unreachable, and skips it only when GITOPSD_SKIP_DOCKER=1.
func Docker(t testing.TB) *client.Client {
	t.Helper()
	if os.Getenv("GITOPSD_SKIP_DOCKER") == "1" {
		t.Skip("GITOPSD_SKIP_DOCKER=1")
	}
	docker.once.Do(func() {
		cli, err := client.New(client.FromEnv, client.WithAPIVersionNegotiation())
		if err != nil {
			docker.err = fmt.Errorf("create docker client: %w", err)
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		// Negotiate explicitly: lazy negotiation on the first request
		// swallows errors such as an engine too old for this client.
		if _, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true}); err != nil {
			cli.Close()
			docker.err = fmt.Errorf("ping docker engine: %w", err)
			return
		}
		docker.cli = cli
	})
	if docker.err != nil {
		t.Fatalf("Docker engine unreachable (set GITOPSD_SKIP_DOCKER=1 to skip on purpose): %v", docker.err)
	}
	return docker.cli
}

var testapp struct {
	once sync.Once
	bin  []byte
	err  error
}

// images counts the tests of this process using each tag, so parallel tests
// sharing a tag do not delete the image from under each other.
var images struct {
	mu    sync.Mutex
	users map[string]int
}

// AppImage builds the test app into an image FROM scratch tagged tag
// (e.g. "gitopsd-test-web:v1"), labelled TestLabel, removed when the test ends.
//
// Tags are not shared across test processes (packages run in parallel under
// `go test ./...`), so give each package its own tag, e.g. via UniqueName.
func AppImage(t testing.TB, tag string) string {
	t.Helper()
	cli := Docker(t)
	if !strings.Contains(tag[strings.LastIndex(tag, "/")+1:], ":") {
		tag += ":latest"
	}
	testapp.once.Do(func() { testapp.bin, testapp.err = buildTestApp() })
	if testapp.err != nil {
		t.Fatalf("build test app: %v", testapp.err)
	}

	images.mu.Lock()
	defer images.mu.Unlock()
	if images.users == nil {
		images.users = map[string]int{}
	}
	if images.users[tag] == 0 {
		start := time.Now()
		if err := buildImage(cli, tag, testapp.bin); err != nil {
			t.Fatalf("build image %s: %v", tag, err)
		}
		t.Logf("built image %s in %v", tag, time.Since(start).Round(time.Millisecond))
	}
	images.users[tag]++
	t.Cleanup(func() {
		images.mu.Lock()
		defer images.mu.Unlock()
		if images.users[tag]--; images.users[tag] > 0 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		_, err := cli.ImageRemove(ctx, tag, client.ImageRemoveOptions{Force: true, PruneChildren: true})
		if err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("remove image %s: %v", tag, err)
		}
	})
	return tag
}

// buildTestApp compiles the test app for the engine's Linux and returns the
// binary; it is kept in memory so no temp file outlives the test process.
func buildTestApp() ([]byte, error) {
	dir, err := os.MkdirTemp("", "gitopsd-testapp-")
	if err != nil {
		return nil, fmt.Errorf("create build dir: %w", err)
	}
	defer os.RemoveAll(dir)
	out := filepath.Join(dir, "testapp")

	cmd := exec.Command("go", "build", "-trimpath", "-ldflags=-s -w", "-o", out, testappPkg)
	// Build from inside the module whatever the test's working directory is.
	if _, file, _, ok := runtime.Caller(0); ok {
		if st, err := os.Stat(filepath.Dir(file)); err == nil && st.IsDir() {
			cmd.Dir = filepath.Dir(file)
		}
	}
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=linux", "GOARCH="+runtime.GOARCH)
	if b, err := cmd.CombinedOutput(); err != nil {
		return nil, fmt.Errorf("go build %s: %w\n%s", testappPkg, err, b)
	}
	bin, err := os.ReadFile(out)
	if err != nil {
		return nil, fmt.Errorf("read test app binary: %w", err)
	}
	return bin, nil
}

// appImageChanges give the imported image what a Dockerfile would.
var appImageChanges = []string{
	`ENTRYPOINT ["/testapp"]`,
	`CMD ["serve"]`,
	"EXPOSE 8080",
	"LABEL " + TestLabel + "=1",
}

// buildImage imports a one-file root filesystem as an image. An import is
// one layer and no intermediate containers: about 0.5s where the classic
// builder takes about 4s on this engine's storage driver.
func buildImage(cli *client.Client, tag string, bin []byte) error {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	hdr := &tar.Header{Name: "testapp", Mode: 0o755, Size: int64(len(bin)), ModTime: time.Unix(0, 0)}
	if err := tw.WriteHeader(hdr); err != nil {
		return fmt.Errorf("write image tar: %w", err)
	}
	if _, err := tw.Write(bin); err != nil {
		return fmt.Errorf("write image tar: %w", err)
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("write image tar: %w", err)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return engine.ImportImage(ctx, cli, &buf, tag, appImageChanges)
}

// CleanupProjects removes, when the test ends (also on failure), every
// container, network and volume whose compose project label is one of projects.
func CleanupProjects(t testing.TB, projects ...string) {
	t.Helper()
	cli := Docker(t)
	t.Cleanup(func() {
		// A minute, and more for many projects: a benchmark's fleet of
		// hundreds of containers takes minutes to remove.
		ctx, cancel := context.WithTimeout(context.Background(), max(60*time.Second, time.Duration(len(projects))*10*time.Second))
		defer cancel()
		report := func(what string, err error) {
			if err == nil {
				return
			}
			// Compose or the code under test may have removed it already.
			if cerrdefs.IsNotFound(err) {
				t.Logf("cleanup: %s: %v", what, err)
				return
			}
			t.Errorf("cleanup: %s: %v", what, err)
		}
		for _, p := range projects {
			f := make(client.Filters).Add("label", "com.docker.compose.project="+p)

			// Sweep until a pass finds nothing: a daemon killed at the end of
			// a test may have had a create in flight that the engine
			// finishes after the first pass listed the project.
			for pass := 0; pass < 3; pass++ {
				ctrs, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
				report("list containers of project "+p, err)
				if len(ctrs.Items) == 0 {
					break
				}
				for _, c := range ctrs.Items {
					_, err := cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true})
					report(fmt.Sprintf("remove container %s %v", c.ID[:12], c.Names), err)
				}
			}

			nets, err := cli.NetworkList(ctx, client.NetworkListOptions{Filters: f})
			report("list networks of project "+p, err)
			for _, n := range nets.Items {
				err := removeNetwork(ctx, cli, n.ID)
				if err != nil && strings.Contains(err.Error(), "active endpoints") {
					// Nothing is attached any more (removeNetwork disconnected
					// all it could see): the engine's endpoint count leaked,
					// which Docker 20.10 does under heavy load, and only a
					// restart of dockerd clears it.
					t.Logf("cleanup: network %s left behind by the engine: %v", n.Name, err)
					continue
				}
				report("remove network "+n.Name, err)
			}

			vols, err := cli.VolumeList(ctx, client.VolumeListOptions{Filters: f})
			report("list volumes of project "+p, err)
			for _, v := range vols.Items {
				_, err := cli.VolumeRemove(ctx, v.Name, client.VolumeRemoveOptions{Force: true})
				report("remove volume "+v.Name, err)
			}
		}
	})
}

// removeNetwork removes a network, first disconnecting what is still
// attached (a client container of the test, or an endpoint the engine has
// not released yet from a container just removed; under load that takes a
// moment).
func removeNetwork(ctx context.Context, cli *client.Client, id string) error {
	var err error
	for attempt := 0; attempt < 20; attempt++ {
		if _, err = cli.NetworkRemove(ctx, id, client.NetworkRemoveOptions{}); err == nil || !strings.Contains(err.Error(), "active endpoints") {
			return err
		}
		if res, ierr := cli.NetworkInspect(ctx, id, client.NetworkInspectOptions{}); ierr == nil {
			for cid := range res.Network.Containers {
				_, _ = cli.NetworkDisconnect(ctx, id, client.NetworkDisconnectOptions{Container: cid, Force: true})
			}
		}
		select {
		case <-ctx.Done():
			return errors.Join(err, ctx.Err())
		case <-time.After(250 * time.Millisecond):
		}
	}
	return err
}

// NetworkLeaked reports whether a network the code under test left behind
// is one the engine itself will not remove: removing it now still fails for
// "active endpoints" though nothing is attached (Docker 20.10 leaks such
// counts now and then, moby/moby#43286). A network that can be removed was
// left by mistake: NetworkLeaked removes it and reports false.
func NetworkLeaked(t testing.TB, id string) bool {
	t.Helper()
	cli := Docker(t)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	_, err := cli.NetworkRemove(ctx, id, client.NetworkRemoveOptions{})
	if err == nil || cerrdefs.IsNotFound(err) || !strings.Contains(err.Error(), "active endpoints") {
		return false
	}
	res, err := cli.NetworkInspect(ctx, id, client.NetworkInspectOptions{})
	return err == nil && len(res.Network.Containers) == 0
}

// UniqueName returns a name safe as a compose project name, unique to this
// test run: prefix + "-" + random.
func UniqueName(t testing.TB, prefix string) string {
	t.Helper()
	var b [4]byte
	if _, err := rand.Read(b[:]); err != nil {
		t.Fatalf("unique name: %v", err)
	}
	// Compose project names allow only [a-z0-9][a-z0-9_-]*; anything else
	// in prefix (e.g. a test name with "/") is mapped to "-".
	p := []byte(strings.ToLower(prefix))
	for i, c := range p {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '_' || c == '-') {
			p[i] = '-'
		}
	}
	name := string(p) + "-" + hex.EncodeToString(b[:])
	if c := name[0]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9') {
		name = "t" + name
	}
	return name
}

// Project is a unique compose project name for the test (UniqueName) whose
// containers, networks and volumes are removed when the test ends, also
// when it fails (CleanupProjects).
func Project(t testing.TB, prefix string) string {
	t.Helper()
	name := UniqueName(t, prefix)
	CleanupProjects(t, name)
	return name
}

var compose struct {
	once sync.Once
	err  error
}

// ComposeV2 makes sure `docker compose` (v2) works, building it from the Go
// module proxy when it does not, and returns the command to run it.
func ComposeV2(t testing.TB) []string {
	t.Helper()
	compose.once.Do(func() { compose.err = ensureCompose(t) })
	if compose.err != nil {
		t.Fatalf("docker compose v2: %v", compose.err)
	}
	return []string{"docker", "compose"}
}

func composeWorks() bool {
	return exec.Command("docker", "compose", "version").Run() == nil
}

// ensureCompose installs the compose CLI plugin unless `docker compose`
// already works. It holds a file lock so parallel test processes build it once.
func ensureCompose(t testing.TB) error {
	if _, err := exec.LookPath("docker"); err != nil {
		return fmt.Errorf("docker CLI not found: %w", err)
	}
	if composeWorks() {
		return nil
	}
	pluginDir, err := cliPluginDir()
	if err != nil {
		return err
	}
	if err := os.MkdirAll(pluginDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", pluginDir, err)
	}
	lock, err := os.OpenFile(filepath.Join(pluginDir, ".gitopsd-compose-build.lock"), os.O_CREATE|os.O_RDWR, 0o644)
	if err != nil {
		return fmt.Errorf("open build lock: %w", err)
	}
	defer lock.Close()
	if err := syscall.Flock(int(lock.Fd()), syscall.LOCK_EX); err != nil {
		return fmt.Errorf("take build lock: %w", err)
	}
	defer syscall.Flock(int(lock.Fd()), syscall.LOCK_UN)
	// Another process may have built it while we waited for the lock.
	if composeWorks() {
		return nil
	}

	t.Logf("docker compose v2 missing: building %s from the Go module proxy into %s (takes minutes)", composeVersion, pluginDir)
	start := time.Now()
	if err := buildCompose(pluginDir); err != nil {
		return err
	}
	t.Logf("built docker compose %s in %v", composeVersion, time.Since(start).Round(time.Second))
	if out, err := exec.Command("docker", "compose", "version").CombinedOutput(); err != nil {
		return fmt.Errorf("docker compose version after install: %w\n%s", err, out)
	}
	return nil
}

// cliPluginDir is where the docker CLI looks for user-installed plugins.
func cliPluginDir() (string, error) {
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		return filepath.Join(d, "cli-plugins"), nil
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return "", fmt.Errorf("find docker config dir: %w", err)
	}
	return filepath.Join(home, ".docker", "cli-plugins"), nil
}

func buildCompose(pluginDir string) error {
	work, err := os.MkdirTemp("", "gitopsd-compose-build-")
	if err != nil {
		return fmt.Errorf("create compose build dir: %w", err)
	}
	defer os.RemoveAll(work)
	// Outside any module and workspace, so neither this repository's go.mod
	// nor a go.work can influence the download or the build.
	env := append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=-mod=mod")

	mod := "github.com/docker/compose/v2@" + composeVersion
	dl := exec.Command("go", "mod", "download", "-json", mod)
	dl.Dir = work
	dl.Env = env
	var stderr bytes.Buffer
	dl.Stderr = &stderr
	out, err := dl.Output()
	if err != nil {
		return fmt.Errorf("go mod download %s: %w\n%s%s", mod, err, out, stderr.Bytes())
	}
	var info struct{ Dir, Error string }
	if err := json.Unmarshal(out, &info); err != nil {
		return fmt.Errorf("parse go mod download output: %w\n%s", err, out)
	}
	if info.Error != "" || info.Dir == "" {
		return fmt.Errorf("go mod download %s: %s", mod, info.Error)
	}

	// The module cache is read-only and `go build` may need to update
	// go.sum, so build from a copy (CopyFS makes the copies writable).
	src := filepath.Join(work, "src")
	if err := os.CopyFS(src, os.DirFS(info.Dir)); err != nil {
		return fmt.Errorf("copy compose source: %w", err)
	}
	// Build next to the target and rename, so nobody ever runs a half-written
	// plugin.
	tmp := filepath.Join(pluginDir, fmt.Sprintf(".docker-compose.%d.tmp", os.Getpid()))
	defer os.Remove(tmp)
	bld := exec.Command("go", "build", "-trimpath",
		"-ldflags=-s -w -X github.com/docker/compose/v2/internal.Version="+composeVersion,
		"-o", tmp, "./cmd")
	bld.Dir = src
	bld.Env = env
	if b, err := bld.CombinedOutput(); err != nil {
		return fmt.Errorf("go build docker compose %s: %w\n%s", composeVersion, err, b)
	}
	if err := os.Rename(tmp, filepath.Join(pluginDir, "docker-compose")); err != nil {
		return fmt.Errorf("install docker compose plugin: %w", err)
	}
	return nil
}

// backupLabel marks the helper containers and scratch volumes gitopsd's
// backups create for a stack (engine.LabelStack + ".backup").
const backupLabel = "io.gitopsd.stack.backup"

// CleanupHelpers removes, when the test ends, the helper containers and
// scratch volumes gitopsd's backups made for a stack and left behind.
func CleanupHelpers(t testing.TB, stack string) {
	t.Helper()
	cli := Docker(t)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		f := make(client.Filters).Add("label", backupLabel+"="+stack)
		if ctrs, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f}); err == nil {
			for _, c := range ctrs.Items {
				_, _ = cli.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true})
			}
		}
		if vols, err := cli.VolumeList(ctx, client.VolumeListOptions{Filters: f}); err == nil {
			for _, v := range vols.Items {
				_, _ = cli.VolumeRemove(ctx, v.Name, client.VolumeRemoveOptions{Force: true})
			}
		}
	})
}

// CountHelpers counts the helper containers and scratch volumes of a stack.
func CountHelpers(cli *client.Client, stack string) (int, error) {
	ctx := context.Background()
	f := make(client.Filters).Add("label", backupLabel+"="+stack)
	ctrs, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		return 0, err
	}
	vols, err := cli.VolumeList(ctx, client.VolumeListOptions{Filters: f})
	if err != nil {
		return 0, err
	}
	return len(ctrs.Items) + len(vols.Items), nil
}

// AloneEnv marks the run of the timing-sensitive tests that `make test`
// runs on their own, after the parallel suite.
const AloneEnv = "GITOPSD_TEST_ALONE"

// RunAlone skips a test whose must-show is a time bound (a heal within
// 2 s, a webhook within 1 s, a roll without a failed request) unless it
// runs on its own: on a 2-core machine the other packages' tests running
// beside it would measure the machine, not gitopsd. `make test` runs these
// tests again, alone, with GITOPSD_TEST_ALONE=1.
func RunAlone(t testing.TB) {
	t.Helper()
	if os.Getenv(AloneEnv) != "1" {
		t.Skipf("timing-sensitive: make test runs it alone after the parallel suite (%s=1)", AloneEnv)
	}
}

// SharedNetwork creates a bridge network, labelled as the tests' own, for
// stacks to join as an external network, and removes it when the test ends
// (after the projects of a CleanupProjects registered later).
func SharedNetwork(t testing.TB, name string) string {
	t.Helper()
	cli := Docker(t)
	ctx := context.Background()
	if _, err := cli.NetworkCreate(ctx, name, client.NetworkCreateOptions{Labels: map[string]string{TestLabel: "1"}}); err != nil {
		t.Fatalf("create network %s: %v", name, err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := removeNetwork(ctx, cli, name); err != nil && !cerrdefs.IsNotFound(err) {
			t.Errorf("cleanup: remove network %s: %v", name, err)
		}
	})
	return name
}
