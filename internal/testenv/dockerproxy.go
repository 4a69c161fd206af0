package testenv

import (
	"context"
	"net"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"
)

// DockerCalls counts the requests that went through a CountDockerCalls
// proxy, by "METHOD /path" with the API version and object names or IDs
// taken out ("GET /containers/{id}/json").
type DockerCalls struct {
	mu     sync.Mutex
	counts map[string]int
}

// Snapshot returns the counts so far.
func (c *DockerCalls) Snapshot() map[string]int {
	c.mu.Lock()
	defer c.mu.Unlock()
	out := make(map[string]int, len(c.counts))
	for k, v := range c.counts {
		out[k] = v
	}
	return out
}

func (c *DockerCalls) add(key string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.counts[key]++
}

// Since returns the counts of after minus those of before.
func Since(before, after map[string]int) map[string]int {
	out := map[string]int{}
	for k, v := range after {
		if d := v - before[k]; d > 0 {
			out[k] = d
		}
	}
	return out
}

// Writes are the calls of counts that are not reads (anything but GET and
// HEAD).
func Writes(counts map[string]int) map[string]int {
	out := map[string]int{}
	for k, v := range counts {
		if !strings.HasPrefix(k, "GET ") && !strings.HasPrefix(k, "HEAD ") {
			out[k] = v
		}
	}
	return out
}

var (
	apiVersion = regexp.MustCompile(`^/v[0-9.]+`)
	objectPath = regexp.MustCompile(`^/(containers|images|networks|volumes|exec)/([^/]+)`)
)

// callKey names a request without what varies between objects.
func callKey(r *http.Request) string {
	p := apiVersion.ReplaceAllString(r.URL.Path, "")
	if m := objectPath.FindStringSubmatch(p); m != nil && m[2] != "json" && m[2] != "create" && m[2] != "prune" {
		p = "/" + m[1] + "/{id}" + strings.TrimPrefix(p, m[0])
	}
	return r.Method + " " + p
}

// CountDockerCalls starts a proxy of the Docker engine's socket that counts
// every API request, points DOCKER_HOST at it for the rest of the test (so
// clients made after this call go through it), and returns the counter.
// Streams (events, logs) pass through unbuffered.
func CountDockerCalls(t testing.TB) *DockerCalls {
	t.Helper()
	// The shared client (Docker) is made from DOCKER_HOST on first use and
	// kept for the process: made here, after the Setenv below, it would
	// point at this proxy's socket after the test (or benchmark run) that
	// owned it closed it, and every later test's image builds would fail.
	Docker(t)
	target := "/var/run/docker.sock"
	if h := os.Getenv("DOCKER_HOST"); strings.HasPrefix(h, "unix://") {
		target = strings.TrimPrefix(h, "unix://")
	} else if h != "" {
		t.Fatalf("CountDockerCalls proxies a unix socket; DOCKER_HOST is %s", h)
	}
	dir, err := os.MkdirTemp("", "dockerproxy") // a socket path must stay short
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	sock := filepath.Join(dir, "docker.sock")
	ln, err := net.Listen("unix", sock)
	if err != nil {
		t.Fatalf("listen for the docker proxy: %v", err)
	}
	calls := &DockerCalls{counts: map[string]int{}}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(&url.URL{Scheme: "http", Host: "docker"})
			pr.Out.Host = "docker"
		},
		Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", target)
		}},
		FlushInterval: -1,
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.add(callKey(r))
		proxy.ServeHTTP(w, r)
	}), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	})
	t.Setenv("DOCKER_HOST", "unix://"+sock)
	return calls
}
