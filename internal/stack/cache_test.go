package stack

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/gitopsd/gitopsd/internal/source"
	"github.com/gitopsd/gitopsd/internal/testenv"
)

// cacheStack is a stack that reads a file of every kind: .env, env_file,
// label_file and a config file.
func cacheStack(name string) map[string]string {
	d := "stacks/" + name + "/"
	return map[string]string{
		d + "compose.yaml": "services:\n  web:\n    image: app:${TAG}\n    env_file: [app.env]\n    label_file: [app.labels]\n    configs: [conf]\nconfigs:\n  conf: {file: ./conf.txt}\n",
		d + ".env":         "TAG=1\n",
		d + "app.env":      "A=1\n",
		d + "app.labels":   "L=1\n",
		d + "conf.txt":     "one\n",
	}
}

// checkouts is a Git repository, its mirror, and a live view of stack
// links as the daemon makes one (internal/daemon/live.go).
type checkouts struct {
	repo *testenv.GitRepo
	src  *source.Source
	live string
}

func newCheckouts(t testing.TB) *checkouts {
	repo := testenv.NewGitRepo(t)
	src, err := source.New(source.Options{URL: repo.Bare, Branch: "main", Dir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	live := t.TempDir()
	if err := os.Mkdir(filepath.Join(live, "stacks"), 0o755); err != nil {
		t.Fatal(err)
	}
	return &checkouts{repo: repo, src: src, live: live}
}

// show checks out rev and points every link of the live view at it.
func (c *checkouts) show(t testing.TB, rev string) {
	dir, err := c.src.Checkout(context.Background(), rev)
	if err != nil {
		t.Fatal(err)
	}
	entries, err := os.ReadDir(filepath.Join(dir, "stacks"))
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		link := filepath.Join(c.live, "stacks", e.Name())
		_ = os.Remove(link)
		if err := os.Symlink(filepath.Join(dir, "stacks", e.Name()), link); err != nil {
			t.Fatal(err)
		}
	}
}

// commit commits files and fetches the new head.
func (c *checkouts) commit(t testing.TB, msg string, files map[string]string) string {
	sha := c.repo.Commit(t, msg, files)
	if _, err := c.src.Fetch(context.Background()); err != nil {
		t.Fatal(err)
	}
	return sha
}

// TestCacheLoadsOnlyChangedStacks: a revision that changes some stack
// folders, in any of the files a stack reads, loads those stacks again
// and reuses the others; so do a host with other labels and a stack
// asked for at another path.
func TestCacheLoadsOnlyChangedStacks(t *testing.T) {
	ctx := context.Background()
	co := newCheckouts(t)
	files := map[string]string{"README.md": "fleet\n"}
	names := []string{"base", "config", "dotenv", "envfile", "labelfile", "untouched"}
	for _, name := range names {
		for f, content := range cacheStack(name) {
			files[f] = content
		}
	}
	co.show(t, co.commit(t, "six stacks", files))
	c := &Cache{Trees: co.src}
	first := byName(t, c.LoadAll(ctx, co.live, host), len(names))
	if c.loads != len(names) {
		t.Fatalf("first revision: %d loads, want %d", c.loads, len(names))
	}
	if again := byName(t, c.LoadAll(ctx, co.live, host), len(names)); again["base"] != first["base"] || c.loads != len(names) {
		t.Fatalf("the same revision again: %d loads, want %d", c.loads, len(names))
	}

	rev2 := co.commit(t, "one file of each kind, and one outside the stacks", map[string]string{
		"README.md":                   "fleet of two\n",
		"stacks/dotenv/.env":          "TAG=2\n",
		"stacks/envfile/app.env":      "A=2\n",
		"stacks/labelfile/app.labels": "L=2\n",
		"stacks/config/conf.txt":      "two\n",
	})
	co.show(t, rev2)
	second := byName(t, c.LoadAll(ctx, co.live, host), len(names))
	for _, name := range names {
		changed := name != "base" && name != "untouched"
		if reused := second[name] == first[name]; reused == changed {
			t.Errorf("stack %s: reused %t, changed by the push %t", name, reused, changed)
		}
	}
	if want := len(names) + 4; c.loads != want {
		t.Errorf("after a push that changed 4 stacks: %d loads in all, want %d", c.loads, want)
	}
	if got := second["dotenv"].Project.Services["web"].Image; got != "app:2" {
		t.Errorf("dotenv: image %q after .env changed, want app:2", got)
	}
	if got := envOf(t, second["envfile"], "web", "A"); got != "2" {
		t.Errorf("envfile: A=%q after app.env changed, want 2", got)
	}
	if got := second["labelfile"].Project.Services["web"].Labels["L"]; got != "2" {
		t.Errorf("labelfile: label L=%q after app.labels changed, want 2", got)
	}

	// The host is part of what a stack loads to.
	other := host
	other.Labels = map[string]string{"site": "paris"}
	third := byName(t, c.LoadAll(ctx, co.live, other), len(names))
	if third["base"] == second["base"] {
		t.Errorf("a host with other labels got the stack loaded for the first host")
	}
	// So is the path it is asked for: the project's paths are under it.
	dir, err := co.src.Checkout(ctx, rev2)
	if err != nil {
		t.Fatal(err)
	}
	st, err := c.Load(ctx, dir, "base", other)
	if err != nil {
		t.Fatal(err)
	}
	if st.Dir != filepath.Join(dir, "stacks", "base") {
		t.Errorf("stack asked for in %s came back with Dir %s", dir, st.Dir)
	}
}

// byName checks that every stack loaded and targets this host.
func byName(t testing.TB, res Result, want int) map[string]*Stack {
	t.Helper()
	if res.Err != nil || len(res.Invalid) > 0 || len(res.Stacks) != want {
		t.Fatalf("loaded %d stacks, want %d: %v %v", len(res.Stacks), want, res.Err, res.Invalid)
	}
	out := map[string]*Stack{}
	for _, st := range res.Stacks {
		out[st.Name] = st
	}
	return out
}

// BenchmarkCachePushOneOf50: a push that changes one of 50 stacks, loaded
// through the cache as a reconcile loads it: the live view moves to the
// new checkout and LoadAll runs. Each iteration moves between two such
// revisions.
func BenchmarkCachePushOneOf50(b *testing.B) {
	ctx := context.Background()
	co := newCheckouts(b)
	files := map[string]string{}
	for s := range 50 {
		var svcs string
		for v := range 5 {
			svcs += fmt.Sprintf("  svc%d:\n    image: app%d:1\n    environment: {A: \"1\", STACK: \"%d\"}\n    ports: [\"80\"]\n    volumes: [data:/data]\n    deploy: {update_config: {monitor: 1s}}\n", v, v, s)
		}
		files[fmt.Sprintf("stacks/s%02d/compose.yaml", s)] = "services:\n" + svcs + "volumes:\n  data: {}\n"
	}
	revs := []string{co.commit(b, "50 stacks", files)}
	revs = append(revs, co.commit(b, "one changed", map[string]string{"stacks/s07/.env": "CHANGED=1\n"}))
	c := &Cache{Trees: co.src}
	co.show(b, revs[0])
	byName(b, c.LoadAll(ctx, co.live, host), 50)
	b.ReportAllocs()
	i := 1
	for b.Loop() {
		co.show(b, revs[i%2])
		byName(b, c.LoadAll(ctx, co.live, host), 50)
		i++
	}
}
