package testenv

import (
	"bytes"
	"context"
	"crypto/subtle"
	"errors"
	"net"
	"net/http"
	"net/http/cgi"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// GitRepo is a bare repository on disk with a working clone to commit from.
type GitRepo struct {
	Bare string // path of the bare repository
	Work string // path of the working clone
	home string // HOME for every git run, so the host's config never applies

	served atomic.Int64 // response bytes ServeHTTP wrote
	wire   atomic.Int64 // bytes ServeHTTP's connections wrote, headers included
	refAds atomic.Int64 // GET info/refs: ref advertisements
	packs  atomic.Int64 // POST git-upload-pack: negotiations that may send a pack
}

// ServedBytes is how many response bytes the ServeHTTP server has sent:
// what clients fetched over the network.
func (r *GitRepo) ServedBytes() int64 { return r.served.Load() }

// Served is what the ServeHTTP server has answered so far.
type Served struct {
	WireBytes      int64 // written to the connections: status lines, headers and bodies
	BodyBytes      int64 // response bodies only (ServedBytes)
	RefAdverts     int64 // GET .../info/refs?service=git-upload-pack
	UploadPackPOST int64 // POST .../git-upload-pack: a want/have negotiation, and a pack unless nothing is wanted
}

// Served reads the ServeHTTP server's counters.
func (r *GitRepo) Served() Served {
	return Served{WireBytes: r.wire.Load(), BodyBytes: r.served.Load(), RefAdverts: r.refAds.Load(), UploadPackPOST: r.packs.Load()}
}

// Sub is what was served between before and s.
func (s Served) Sub(before Served) Served {
	return Served{
		WireBytes:      s.WireBytes - before.WireBytes,
		BodyBytes:      s.BodyBytes - before.BodyBytes,
		RefAdverts:     s.RefAdverts - before.RefAdverts,
		UploadPackPOST: s.UploadPackPOST - before.UploadPackPOST,
	}
}

// countingListener counts what its connections write, so a server's bytes
// sent include what HTTP adds around the bodies.
type countingListener struct {
	net.Listener
	n *atomic.Int64
}

func (l countingListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return countingConn{c, l.n}, nil
}

type countingConn struct {
	net.Conn
	n *atomic.Int64
}

func (c countingConn) Write(p []byte) (int, error) {
	n, err := c.Conn.Write(p)
	c.n.Add(int64(n))
	return n, err
}

// countingWriter counts the bytes of a response body.
type countingWriter struct {
	http.ResponseWriter
	n *atomic.Int64
}

func (w countingWriter) Write(p []byte) (int, error) {
	n, err := w.ResponseWriter.Write(p)
	w.n.Add(int64(n))
	return n, err
}

// NewGitRepo creates an empty bare repository with branch main.
func NewGitRepo(t testing.TB) *GitRepo {
	t.Helper()
	if _, err := exec.LookPath("git"); err != nil {
		t.Fatalf("git CLI not found: %v", err)
	}
	root := t.TempDir()
	r := &GitRepo{
		Bare: filepath.Join(root, "remote", "repo.git"),
		Work: filepath.Join(root, "work"),
		home: filepath.Join(root, "home"),
	}
	for _, dir := range []string{r.Bare, r.Work, r.home} {
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatalf("create git test dir: %v", err)
		}
	}
	r.git(t, r.Bare, "init", "-q", "--bare", "-b", "main")
	r.git(t, r.Work, "init", "-q", "-b", "main")
	r.git(t, r.Work, "config", "user.name", "gitopsd test")
	r.git(t, r.Work, "config", "user.email", "test@gitopsd.invalid")
	r.git(t, r.Work, "config", "commit.gpgsign", "false")
	r.git(t, r.Work, "remote", "add", "origin", r.Bare)
	return r
}

// Commit writes files (path -> content; "" content with Delete semantics is
// expressed by a nil entry in Remove), removes remove, commits and pushes to
// main, and returns the new commit's SHA.
func (r *GitRepo) Commit(t testing.TB, msg string, files map[string]string, remove ...string) string {
	t.Helper()
	return r.commit(t, nil, msg, files, remove)
}

// commit is Commit, signed with key unless key is nil.
func (r *GitRepo) commit(t testing.TB, key *SigningKey, msg string, files map[string]string, remove []string) string {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(r.Work, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatalf("commit %q: create dir for %s: %v", msg, name, err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatalf("commit %q: write %s: %v", msg, name, err)
		}
	}
	for _, name := range remove {
		r.git(t, r.Work, "rm", "-r", "-q", "--ignore-unmatch", "--", filepath.FromSlash(name))
		// git rm leaves untracked files behind; a removed path must be gone
		// from the tree so the next `add -A` does not resurrect it.
		if err := os.RemoveAll(filepath.Join(r.Work, filepath.FromSlash(name))); err != nil {
			t.Fatalf("commit %q: remove %s: %v", msg, name, err)
		}
	}
	r.git(t, r.Work, "add", "-A")
	if key == nil {
		r.git(t, r.Work, "commit", "-q", "--allow-empty", "-m", msg)
	} else {
		args := append(key.gitConfig(), "commit", "-q", "--allow-empty", "-S", "-m", msg)
		r.gitWith(t, r.Work, key.env(), args...)
	}
	r.git(t, r.Work, "push", "-q", "origin", "HEAD:main")
	return strings.TrimSpace(r.git(t, r.Work, "rev-parse", "HEAD"))
}

// Git runs the git CLI in the working clone (for histories Commit cannot
// make: branches, merges) and returns its trimmed stdout.
func (r *GitRepo) Git(t testing.TB, args ...string) string {
	t.Helper()
	return strings.TrimSpace(r.git(t, r.Work, args...))
}

// ServeHTTP serves the bare repository over git's smart HTTP protocol on
// 127.0.0.1 until the test ends and returns its URL. With token != "", every
// request must carry it (HTTP basic auth password, any user).
func (r *GitRepo) ServeHTTP(t testing.TB, token string) string {
	t.Helper()
	execPath := strings.TrimSpace(r.git(t, r.Work, "--exec-path"))
	backend := filepath.Join(execPath, "git-http-backend")
	if _, err := os.Stat(backend); err != nil {
		t.Fatalf("git http-backend not available: %v", err)
	}

	// net/http/cgi passes only PATH and a few loader variables from our
	// environment, so GIT_* settings of the host cannot leak into the backend.
	cgiHandler := &cgi.Handler{
		Path: backend,
		Dir:  filepath.Dir(r.Bare),
		Env: []string{
			"HOME=" + r.home,
			"XDG_CONFIG_HOME=" + filepath.Join(r.home, ".config"),
			"GIT_CONFIG_NOSYSTEM=1",
			"GIT_PROJECT_ROOT=" + filepath.Dir(r.Bare),
			"GIT_HTTP_EXPORT_ALL=1",
		},
		Stderr: testLogWriter{t},
	}
	var handler http.Handler = cgiHandler
	if token != "" {
		handler = http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
			_, pass, ok := req.BasicAuth()
			if !ok || subtle.ConstantTimeCompare([]byte(pass), []byte(token)) != 1 {
				w.Header().Set("WWW-Authenticate", `Basic realm="git"`)
				http.Error(w, "authentication required", http.StatusUnauthorized)
				return
			}
			cgiHandler.ServeHTTP(w, req)
		})
	}

	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen for git http server: %v", err)
	}
	counted := http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		switch {
		case req.Method == http.MethodGet && strings.HasSuffix(req.URL.Path, "/info/refs"):
			r.refAds.Add(1)
		case req.Method == http.MethodPost && strings.HasSuffix(req.URL.Path, "/git-upload-pack"):
			r.packs.Add(1)
		}
		handler.ServeHTTP(countingWriter{w, &r.served}, req)
	})
	srv := &http.Server{Handler: counted, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan error, 1)
	go func() { done <- srv.Serve(countingListener{ln, &r.wire}) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		if err := srv.Shutdown(ctx); err != nil {
			t.Logf("shut down git http server: %v", err)
		}
		if err := <-done; err != nil && !errors.Is(err, http.ErrServerClosed) {
			t.Logf("git http server: %v", err)
		}
	})
	return "http://" + ln.Addr().String() + "/" + filepath.Base(r.Bare)
}

// git runs the git CLI in dir with a hermetic environment and returns its
// stdout; it fails the test with the combined output on error.
func (r *GitRepo) git(t testing.TB, dir string, args ...string) string {
	t.Helper()
	return r.gitWith(t, dir, nil, args...)
}

// gitWith is git with extra environment variables (such as GNUPGHOME for a
// signing run) on top of the hermetic ones.
func (r *GitRepo) gitWith(t testing.TB, dir string, env []string, args ...string) string {
	t.Helper()
	if r.home == "" {
		// A GitRepo built by hand still must not read the host's config.
		r.home = t.TempDir()
	}
	out, err := runGitEnv(r.home, dir, env, args...)
	if err != nil {
		t.Fatalf("git %s: %v", strings.Join(args, " "), err)
	}
	return out
}

// runGit runs the git CLI in dir with HOME=home and no system config or GIT_*
// variables from the caller's environment, so results do not depend on the
// host. It returns stdout; the error carries stderr.
func runGit(home, dir string, args ...string) (string, error) {
	return runGitEnv(home, dir, nil, args...)
}

// runGitEnv is runGit with env added to the environment; os/exec lets a
// later entry win, so env overrides a variable the caller already has.
func runGitEnv(home, dir string, env []string, args ...string) (string, error) {
	cmd := exec.Command("git", args...)
	cmd.Dir = dir
	cmd.Env = append(gitEnv(home), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return stdout.String(), errors.Join(err, errors.New(strings.TrimSpace(stderr.String())))
	}
	return stdout.String(), nil
}

// gitEnv is the environment for git: the caller's variables minus anything
// that changes git's behaviour, plus a private HOME.
func gitEnv(home string) []string {
	var env []string
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch {
		case strings.HasPrefix(k, "GIT_"), k == "HOME", k == "XDG_CONFIG_HOME", k == "EMAIL":
			continue
		}
		env = append(env, kv)
	}
	return append(env,
		"HOME="+home,
		"XDG_CONFIG_HOME="+filepath.Join(home, ".config"),
		"GIT_CONFIG_NOSYSTEM=1",
		"GIT_TERMINAL_PROMPT=0",
		"LC_ALL=C",
	)
}

// testLogWriter forwards a subprocess's stderr to the test log.
type testLogWriter struct{ t testing.TB }

func (w testLogWriter) Write(p []byte) (int, error) {
	w.t.Logf("%s", bytes.TrimRight(p, "\n"))
	return len(p), nil
}
