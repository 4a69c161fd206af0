package testenv

import (
	"archive/tar"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/authconfig"
	"github.com/moby/moby/api/types/registry"
	"github.com/moby/moby/client"
	"golang.org/x/crypto/bcrypt"

	"github.com/gitopsd/gitopsd/internal/engine"
)

// registryVersion is the distribution registry the tests push to and
// gitopsd pulls from; pinned so every CI machine runs the same one.
const (
	registryVersion = "v3.1.2"
	registryPkg     = "github.com/distribution/distribution/v3/cmd/registry"
)

var registryBin struct {
	once sync.Once
	path string
	err  error
}

// Registry is a private registry (distribution's) on 127.0.0.1: basic
// auth from an htpasswd file, storage in the test's temporary folder.
// Docker treats 127.0.0.0/8 registries as insecure, so it is plain HTTP.
type Registry struct {
	Host     string // 127.0.0.1:<port>, the start of every reference into it
	User     string
	Password string

	t    testing.TB
	cli  *client.Client
	proc *serverProcess

	mu     sync.Mutex
	images map[string]bool // references and IDs to remove at the end
}

// StartRegistry runs a registry for the test, with a random user and
// password, and stops it when the test ends, removing the images it pushed
// (tags and IDs, also those gitopsd pulled from it) from the engine. Call it
// before CleanupProjects, so the containers go before their images.
func StartRegistry(t testing.TB) *Registry {
	t.Helper()
	cli := Docker(t)
	registryBin.once.Do(func() { registryBin.path, registryBin.err = ensureRegistry(t) })
	if registryBin.err != nil {
		t.Fatalf("registry %s: %v", registryVersion, registryBin.err)
	}
	dir := t.TempDir()
	r := &Registry{
		Host: "127.0.0.1:" + strconv.Itoa(FreePort(t)), User: "gitopsd", Password: randomHex(t, 12),
		t: t, cli: cli, images: map[string]bool{},
	}
	config := filepath.Join(dir, "config.yml")
	// No telemetry exporters: nothing listens for them here.
	r.proc = &serverProcess{name: "registry on " + r.Host, argv: []string{registryBin.path, "serve", config}, logf: filepath.Join(dir, "registry.log"),
		env: []string{"OTEL_TRACES_EXPORTER=none", "OTEL_METRICS_EXPORTER=none", "OTEL_LOGS_EXPORTER=none"}}
	if err := r.writeConfig(dir, config); err != nil {
		t.Fatalf("registry config: %v", err)
	}
	t.Cleanup(r.cleanup)
	r.Start()
	return r
}

// writeConfig writes the registry's configuration and its htpasswd file
// (bcrypt, the only hash the registry takes).
func (r *Registry) writeConfig(dir, config string) error {
	hash, err := bcrypt.GenerateFromPassword([]byte(r.Password), bcrypt.MinCost)
	if err != nil {
		return err
	}
	htpasswd := filepath.Join(dir, "htpasswd")
	if err := os.WriteFile(htpasswd, []byte(r.User+":"+string(hash)+"\n"), 0o600); err != nil {
		return err
	}
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: warn
  accesslog: {disabled: true}
storage:
  filesystem: {rootdirectory: %s}
  delete: {enabled: true}
http:
  addr: %s
  secret: %s
auth:
  htpasswd:
    realm: gitopsd-test
    path: %s
`, filepath.Join(dir, "storage"), r.Host, randomHex(r.t, 16), htpasswd)
	return os.WriteFile(config, []byte(cfg), 0o600)
}

// Start runs the registry (again, after Stop) on its port and waits until
// it answers.
func (r *Registry) Start() {
	r.t.Helper()
	if err := r.proc.start(r.waitAnswers); err != nil {
		r.t.Fatal(err)
	}
}

// waitAnswers waits until the registry asks for credentials at /v2/, which
// proves both that it listens and that its auth is on.
func (r *Registry) waitAnswers(exited <-chan struct{}) error {
	c := http.Client{Timeout: time.Second}
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		resp, err := c.Get("http://" + r.Host + "/v2/")
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusUnauthorized {
				return nil
			}
			err = fmt.Errorf("GET /v2/ answers %s, want 401", resp.Status)
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-exited:
			return errors.New("the registry exited")
		case <-tick.C:
		}
	}
}

// Stop ends the registry process; images on the engine stay.
func (r *Registry) Stop() {
	r.t.Helper()
	if err := r.proc.stop(); err != nil {
		r.t.Fatal(err)
	}
}

// PushApp builds the test app into an image named <host>/<name> (e.g.
// "app:v1"), labelled TestLabel, with variant in a label too (so each
// variant is another image ID), pushes it and returns the reference and the
// image ID. The local image stays; RemoveLocal removes it.
func (r *Registry) PushApp(t testing.TB, name, variant string) (ref, id string) {
	t.Helper()
	return r.PushAppWith(t, name, variant)
}

// PushAppWith is PushApp with more Dockerfile-like changes to the image,
// such as "ENV FAIL_HEALTH=1" for an image whose healthcheck fails.
func (r *Registry) PushAppWith(t testing.TB, name, variant string, changes ...string) (ref, id string) {
	t.Helper()
	ref = r.Host + "/" + name
	testapp.once.Do(func() { testapp.bin, testapp.err = buildTestApp() })
	if testapp.err != nil {
		t.Fatalf("build test app: %v", testapp.err)
	}
	r.track(ref)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	changes = append(append(append([]string(nil), appImageChanges...), "LABEL "+TestLabel+".variant="+variant), changes...)
	if err := engine.ImportImage(ctx, r.cli, appImageTar(t, testapp.bin), ref, changes); err != nil {
		t.Fatalf("build image %s: %v", ref, err)
	}
	res, err := r.cli.ImageInspect(ctx, ref)
	if err != nil {
		t.Fatalf("inspect %s: %v", ref, err)
	}
	r.track(res.ID)
	if err := r.push(ctx, ref); err != nil {
		t.Fatalf("push %s: %v", ref, err)
	}
	return ref, res.ID
}

func (r *Registry) push(ctx context.Context, ref string) error {
	auth, err := authconfig.Encode(registry.AuthConfig{Username: r.User, Password: r.Password, ServerAddress: r.Host})
	if err != nil {
		return err
	}
	resp, err := r.cli.ImagePush(ctx, ref, client.ImagePushOptions{RegistryAuth: auth})
	if err != nil {
		return err
	}
	defer resp.Close()
	for msg, err := range resp.JSONMessages(ctx) {
		if err != nil {
			return err
		}
		if msg.Error != nil {
			return errors.New(msg.Error.Message)
		}
	}
	return nil
}

// RemoveLocal removes an image from the engine, so the next use must pull.
func (r *Registry) RemoveLocal(t testing.TB, ref string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := r.cli.ImageRemove(ctx, ref, client.ImageRemoveOptions{Force: true, PruneChildren: true}); err != nil && !cerrdefs.IsNotFound(err) {
		t.Fatalf("remove image %s: %v", ref, err)
	}
}

// WriteDockerConfig writes a config.json as `docker login host` leaves it
// (auths: base64 of user:password) and returns its path.
func WriteDockerConfig(t testing.TB, host, user, password string) string {
	t.Helper()
	cfg := map[string]any{"auths": map[string]any{
		host: map[string]string{"auth": base64.StdEncoding.EncodeToString([]byte(user + ":" + password))},
	}}
	data, err := json.Marshal(cfg)
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, data, 0o600); err != nil {
		t.Fatalf("write docker config: %v", err)
	}
	return path
}

func (r *Registry) track(image string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.images[image] = true
}

// cleanup stops the registry and removes every image pushed to it, by
// reference and by ID: a tag that moved leaves its old image behind.
func (r *Registry) cleanup() {
	if err := r.proc.stop(); err != nil {
		r.t.Errorf("cleanup: %v", err)
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for image := range r.images {
		_, err := r.cli.ImageRemove(ctx, image, client.ImageRemoveOptions{Force: true, PruneChildren: true})
		if err != nil && !cerrdefs.IsNotFound(err) {
			r.t.Errorf("cleanup: remove image %s: %v", image, err)
		}
	}
}

// appImageTar is the root filesystem of the test app's image: one file.
func appImageTar(t testing.TB, bin []byte) *bytes.Buffer {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if err := tw.WriteHeader(&tar.Header{Name: "testapp", Mode: 0o755, Size: int64(len(bin)), ModTime: time.Unix(0, 0)}); err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Write(bin); err != nil {
		t.Fatal(err)
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	return &buf
}

// ensureRegistry returns the registry binary, installed with `go install`
// from the Go module proxy into a cache folder the first time (cachedTool).
func ensureRegistry(t testing.TB) (string, error) {
	return cachedTool(t, "registry", registryVersion, "registry", installRegistry)
}

// installRegistry runs go install outside any module and workspace, so
// neither this repository's go.mod nor a go.work can influence the build,
// into a private folder, and moves the binary into place: nobody ever runs
// a half-written one.
func installRegistry(dir, bin string) error {
	work, err := os.MkdirTemp(dir, "build-")
	if err != nil {
		return fmt.Errorf("create build folder: %w", err)
	}
	defer os.RemoveAll(work)
	cmd := exec.Command("go", "install", registryPkg+"@"+registryVersion)
	cmd.Dir = work
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOWORK=off", "GOFLAGS=", "GOBIN="+work)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("go install %s@%s: %w\n%s", registryPkg, registryVersion, err, out)
	}
	if err := os.Rename(filepath.Join(work, "registry"), bin); err != nil {
		return fmt.Errorf("install registry: %w", err)
	}
	return nil
}

// freeLocalPort is a TCP port free on 127.0.0.1 at the time of asking.
// FreePort is a TCP port on 127.0.0.1 that nothing listens on now.
func FreePort(t testing.TB) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("find a free port: %v", err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

func randomHex(t testing.TB, n int) string {
	t.Helper()
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return hex.EncodeToString(b)
}

// Log is the registry's own log so far, for a failing test.
func (r *Registry) Log() string { return r.proc.log() }
