package testenv

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"
)

// waitFor polls cond until it reports done or the deadline passes; the last
// error explains a timeout.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() (bool, error)) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var last error
	for {
		done, err := cond()
		if done {
			return
		}
		last = err
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s: %v", timeout, what, last)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func TestUniqueName(t *testing.T) {
	valid := regexp.MustCompile(`^[a-z0-9][a-z0-9_-]*$`)
	seen := map[string]bool{}
	for _, prefix := range []string{"gitopsd", "TestFoo/Sub Case", "_x", "a.b"} {
		for range 5 {
			name := UniqueName(t, prefix)
			if !valid.MatchString(name) {
				t.Errorf("UniqueName(%q) = %q: not a valid compose project name", prefix, name)
			}
			if !regexp.MustCompile(`-[0-9a-f]{8}$`).MatchString(name) {
				t.Errorf("UniqueName(%q) = %q: want 8 hex chars suffix", prefix, name)
			}
			if seen[name] {
				t.Errorf("UniqueName(%q) = %q twice", prefix, name)
			}
			seen[name] = true
		}
	}
	if got := UniqueName(t, "gitopsd"); !strings.HasPrefix(got, "gitopsd-") || len(got) != len("gitopsd-")+8 {
		t.Errorf("UniqueName(gitopsd) = %q, want gitopsd-xxxxxxxx", got)
	}
}

func TestGitRepoServeHTTP(t *testing.T) {
	r := NewGitRepo(t)
	first := r.Commit(t, "first", map[string]string{
		"app/compose.yaml": "services: {}\n",
		"app/sub/x.txt":    "x",
		"README":           "hello",
	})
	second := r.Commit(t, "drop sub", map[string]string{"README": "hello again"}, "app/sub")
	if first == second || !regexp.MustCompile(`^[0-9a-f]{40}$`).MatchString(second) {
		t.Fatalf("commits: first %q, second %q", first, second)
	}
	if got := strings.TrimSpace(r.git(t, r.Bare, "rev-parse", "refs/heads/main")); got != second {
		t.Fatalf("bare main = %s, want pushed %s", got, second)
	}

	home := t.TempDir()
	clone := func(url string) (string, error) {
		dst := filepath.Join(t.TempDir(), "clone")
		if _, err := runGit(home, t.TempDir(), "clone", "-q", url, dst); err != nil {
			return "", err
		}
		return dst, nil
	}
	check := func(dst string) {
		t.Helper()
		head, err := runGit(home, dst, "rev-parse", "HEAD")
		if err != nil || strings.TrimSpace(head) != second {
			t.Errorf("clone HEAD = %q (%v), want %s", head, err, second)
		}
		if b, err := os.ReadFile(filepath.Join(dst, "README")); err != nil || string(b) != "hello again" {
			t.Errorf("clone README = %q (%v)", b, err)
		}
		if _, err := os.Stat(filepath.Join(dst, "app", "sub")); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("app/sub should be removed from the tree, stat: %v", err)
		}
		if _, err := os.Stat(filepath.Join(dst, "app", "compose.yaml")); err != nil {
			t.Errorf("app/compose.yaml missing: %v", err)
		}
	}

	t.Run("anonymous", func(t *testing.T) {
		url := r.ServeHTTP(t, "")
		if !strings.HasPrefix(url, "http://127.0.0.1:") || !strings.HasSuffix(url, "/repo.git") {
			t.Errorf("url = %q", url)
		}
		dst, err := clone(url)
		if err != nil {
			t.Fatalf("clone %s: %v", url, err)
		}
		check(dst)
	})

	t.Run("token", func(t *testing.T) {
		url := r.ServeHTTP(t, "s3cret")
		if _, err := clone(url); err == nil {
			t.Errorf("clone without credentials succeeded")
		}
		if _, err := clone(strings.Replace(url, "http://", "http://x:wrong@", 1)); err == nil {
			t.Errorf("clone with a wrong token succeeded")
		}
		resp, err := http.Get(url + "/info/refs?service=git-upload-pack")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") != `Basic realm="git"` {
			t.Errorf("anonymous request: %s, WWW-Authenticate %q", resp.Status, resp.Header.Get("WWW-Authenticate"))
		}
		dst, err := clone(strings.Replace(url, "http://", "http://x:s3cret@", 1))
		if err != nil {
			t.Fatalf("clone with token: %v", err)
		}
		check(dst)
	})
}

// TestTestApp runs the test app natively, so its behaviour is checked without
// the engine's help.
func TestTestApp(t *testing.T) {
	testapp.once.Do(func() { testapp.bin, testapp.err = buildTestApp() })
	if testapp.err != nil {
		t.Fatalf("build test app: %v", testapp.err)
	}
	dir := t.TempDir()
	bin := filepath.Join(dir, "testapp")
	if err := os.WriteFile(bin, testapp.bin, 0o755); err != nil {
		t.Fatal(err)
	}
	run := func(env []string, args ...string) (string, error) {
		cmd := exec.Command(bin, args...)
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.Output()
		return string(out), err
	}

	port := fmt.Sprint(FreePort(t))
	base := "http://127.0.0.1:" + port
	written := filepath.Join(dir, "written")
	srv := exec.Command(bin) // no args: serve
	srv.Env = append(os.Environ(), "PORT="+port, "VERSION=v7", "WRITE_FILE="+written+"=a=b")
	srv.Stdout, srv.Stderr = io.Discard, io.Discard
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- srv.Wait() }()
	t.Cleanup(func() { srv.Process.Kill() })

	probeEnv := []string{"PORT=" + port}
	waitFor(t, 10*time.Second, "testapp to serve", func() (bool, error) {
		_, err := run(probeEnv, "probe")
		return err == nil, err
	})
	if out, err := run(nil, "get", base+"/"); err != nil || out != "v7\n" {
		t.Errorf("get / = %q, %v", out, err)
	}
	if out, err := run(nil, "get", base+"/version"); err != nil || out != "v7\n" {
		t.Errorf("get /version = %q, %v", out, err)
	}
	if b, err := os.ReadFile(written); err != nil || string(b) != "a=b" {
		t.Errorf("WRITE_FILE wrote %q, %v", b, err)
	}

	post := func(path string) {
		t.Helper()
		resp, err := http.Post(base+path, "", nil)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
	}
	post("/fail")
	if _, err := run(probeEnv, "probe"); err == nil {
		t.Errorf("probe passed while failing")
	}
	if _, err := run(nil, "get", base+"/healthz"); err == nil {
		t.Errorf("get /healthz exited 0 on 503")
	}
	post("/recover")
	if _, err := run(nil, "probe", base+"/healthz"); err != nil {
		t.Errorf("probe after recover: %v", err)
	}

	f := filepath.Join(dir, "put")
	req, _ := http.NewRequest(http.MethodPut, base+"/file?path="+f, strings.NewReader("payload"))
	if resp, err := http.DefaultClient.Do(req); err != nil {
		t.Fatal(err)
	} else if resp.Body.Close(); resp.StatusCode/100 != 2 {
		t.Errorf("PUT /file: %s", resp.Status)
	}
	if out, err := run(nil, "get", base+"/file?path="+f); err != nil || out != "payload" {
		t.Errorf("GET /file = %q, %v", out, err)
	}
	if resp, err := http.Get(base + "/file?path=" + filepath.Join(dir, "missing")); err != nil {
		t.Fatal(err)
	} else if resp.Body.Close(); resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /file missing: %s", resp.Status)
	}

	loadOut := filepath.Join(dir, "load.json")
	if _, err := run(nil, "load", base+"/", "--duration", "300ms", "--out", loadOut); err != nil {
		t.Fatalf("load: %v", err)
	}
	var stats struct {
		Requests, Failures int
		Errors             []string
	}
	if b, err := os.ReadFile(loadOut); err != nil || json.Unmarshal(b, &stats) != nil {
		t.Fatalf("load output %q: %v", b, err)
	}
	if stats.Requests == 0 || stats.Failures != 0 {
		t.Errorf("load stats %+v", stats)
	}

	if err := srv.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-exited:
		if err != nil {
			t.Errorf("exit after SIGTERM: %v, want status 0", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatalf("testapp ignored SIGTERM")
	}

	t.Run("crash", func(t *testing.T) {
		port := fmt.Sprint(FreePort(t))
		srv := exec.Command(bin, "serve")
		srv.Env = append(os.Environ(), "PORT="+port)
		if err := srv.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- srv.Wait() }()
		t.Cleanup(func() { srv.Process.Kill() })
		waitFor(t, 10*time.Second, "testapp to serve", func() (bool, error) {
			_, err := run([]string{"PORT=" + port}, "probe")
			return err == nil, err
		})
		resp, err := http.Post("http://127.0.0.1:"+port+"/crash", "", nil)
		if err != nil {
			t.Fatalf("POST /crash must answer before exiting: %v", err)
		}
		resp.Body.Close()
		select {
		case err := <-exited:
			var ee *exec.ExitError
			if !errors.As(err, &ee) || ee.ExitCode() != 1 {
				t.Errorf("exit after /crash: %v, want status 1", err)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("testapp did not crash")
		}
	})

	t.Run("crash after", func(t *testing.T) {
		err := exec.Command("env", "PORT="+fmt.Sprint(FreePort(t)), "CRASH_AFTER=200ms", bin).Run()
		var ee *exec.ExitError
		if !errors.As(err, &ee) || ee.ExitCode() != 1 {
			t.Errorf("exit with CRASH_AFTER: %v, want status 1", err)
		}
	})
}

func TestAppImageHealthy(t *testing.T) {
	cli := Docker(t)
	ctx := context.Background()
	var tag, ctrID string

	t.Run("run", func(t *testing.T) {
		start := time.Now()
		tag = AppImage(t, UniqueName(t, "gitopsd-testenv")+":v1")
		t.Logf("AppImage took %v", time.Since(start).Round(time.Millisecond))
		if again := AppImage(t, tag); again != tag {
			t.Errorf("AppImage again = %q, want %q", again, tag)
		}
		if got := AppImage(t, strings.TrimSuffix(tag, ":v1")); !strings.HasSuffix(got, ":latest") {
			t.Errorf("AppImage without tag = %q, want :latest", got)
		}

		hostPort := network.PortBinding{HostIP: netip.MustParseAddr("127.0.0.1")}
		created, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{
			Config: &container.Config{
				Image:  tag,
				Env:    []string{"VERSION=v1-test"},
				Labels: map[string]string{TestLabel: "1"},
				Healthcheck: &container.HealthConfig{
					Test:     []string{"CMD", "/testapp", "probe"},
					Interval: time.Second,
					Timeout:  3 * time.Second,
					Retries:  3,
				},
			},
			HostConfig: &container.HostConfig{
				PortBindings: network.PortMap{network.MustParsePort("8080/tcp"): {hostPort}},
			},
			Name: UniqueName(t, "gitopsd-testenv"),
		})
		if err != nil {
			t.Fatalf("create container: %v", err)
		}
		ctrID = created.ID
		t.Cleanup(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			if _, err := cli.ContainerRemove(ctx, ctrID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil {
				t.Errorf("remove container: %v", err)
			}
		})
		if _, err := cli.ContainerStart(ctx, ctrID, client.ContainerStartOptions{}); err != nil {
			t.Fatalf("start container: %v", err)
		}

		start = time.Now()
		var insp container.InspectResponse
		waitFor(t, 60*time.Second, "container to become healthy", func() (bool, error) {
			res, err := cli.ContainerInspect(ctx, ctrID, client.ContainerInspectOptions{})
			if err != nil {
				return false, err
			}
			insp = res.Container
			if insp.State == nil || insp.State.Health == nil {
				return false, errors.New("no health state")
			}
			if insp.State.Status != container.StateRunning {
				return false, fmt.Errorf("container %s", insp.State.Status)
			}
			return insp.State.Health.Status == container.Healthy, fmt.Errorf("health %s", insp.State.Health.Status)
		})
		t.Logf("healthy after %v", time.Since(start).Round(time.Millisecond))

		bindings := insp.NetworkSettings.Ports[network.MustParsePort("8080/tcp")]
		if len(bindings) == 0 {
			t.Fatalf("no host binding for 8080/tcp: %v", insp.NetworkSettings.Ports)
		}
		resp, err := http.Get("http://127.0.0.1:" + bindings[0].HostPort + "/")
		if err != nil {
			t.Fatalf("get published port: %v", err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "v1-test\n" {
			t.Errorf("GET / = %q, want v1-test", b)
		}
	})

	// After the subtest its cleanups have run: nothing may be left behind.
	if ctrID == "" || tag == "" {
		t.FailNow()
	}
	if _, err := cli.ContainerInspect(ctx, ctrID, client.ContainerInspectOptions{}); !cerrdefs.IsNotFound(err) {
		t.Errorf("container still there after cleanup: %v", err)
	}
	for _, img := range []string{tag, strings.TrimSuffix(tag, ":v1") + ":latest"} {
		if _, err := cli.ImageInspect(ctx, img); !cerrdefs.IsNotFound(err) {
			t.Errorf("image %s still there after cleanup: %v", img, err)
		}
	}
}

func TestCleanupProjects(t *testing.T) {
	cli := Docker(t)
	ctx := context.Background()
	project := UniqueName(t, "gitopsd-testenv")
	filter := make(client.Filters).Add("label", "com.docker.compose.project="+project)

	t.Run("create", func(t *testing.T) {
		tag := AppImage(t, project+":v1")
		CleanupProjects(t, project)
		labels := map[string]string{TestLabel: "1", "com.docker.compose.project": project}
		net, err := cli.NetworkCreate(ctx, project+"_default", client.NetworkCreateOptions{Labels: labels})
		if err != nil {
			t.Fatalf("create network: %v", err)
		}
		if _, err := cli.VolumeCreate(ctx, client.VolumeCreateOptions{Name: project + "_data", Labels: labels}); err != nil {
			t.Fatalf("create volume: %v", err)
		}
		for i, start := range []bool{true, false} {
			c, err := cli.ContainerCreate(ctx, client.ContainerCreateOptions{
				Config:     &container.Config{Image: tag, Labels: labels},
				HostConfig: &container.HostConfig{NetworkMode: container.NetworkMode(net.ID)},
				Name:       fmt.Sprintf("%s-web-%d", project, i+1),
			})
			if err != nil {
				t.Fatalf("create container: %v", err)
			}
			if start {
				if _, err := cli.ContainerStart(ctx, c.ID, client.ContainerStartOptions{}); err != nil {
					t.Fatalf("start container: %v", err)
				}
			}
		}
	})

	ctrs, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: filter})
	if err != nil || len(ctrs.Items) != 0 {
		t.Errorf("containers left: %d, %v", len(ctrs.Items), err)
	}
	nets, err := cli.NetworkList(ctx, client.NetworkListOptions{Filters: filter})
	if err != nil || len(nets.Items) != 0 {
		t.Errorf("networks left: %d, %v", len(nets.Items), err)
	}
	vols, err := cli.VolumeList(ctx, client.VolumeListOptions{Filters: filter})
	if err != nil || len(vols.Items) != 0 {
		t.Errorf("volumes left: %d, %v", len(vols.Items), err)
	}
}

func TestComposeV2(t *testing.T) {
	if os.Getenv("GITOPSD_SKIP_DOCKER") == "1" {
		t.Skip("GITOPSD_SKIP_DOCKER=1")
	}
	cmd := ComposeV2(t)
	out, err := exec.Command(cmd[0], append(cmd[1:], "version", "--short")...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s version: %v\n%s", strings.Join(cmd, " "), err, out)
	}
	t.Logf("docker compose version %s", strings.TrimSpace(string(out)))
	if v := strings.TrimSpace(string(out)); strings.HasPrefix(v, "1.") {
		t.Errorf("compose version %q is not v2", v)
	}
}
