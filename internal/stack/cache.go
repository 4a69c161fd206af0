package stack

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
)

// Cache keeps loaded stacks by what decides what they load to: the
// content of the stack folder (its tree hash, when Trees knows it), the
// path it was asked for (the project's paths are under it), and the host
// (name, labels, policy) and process environment that interpolation and
// the policy see. A push that changes one stack's folder then loads that
// stack again and no other, and a poll that finds nothing new, or a drift
// check, loads nothing.
//
// The folder's content is all a stack can read: paths outside it are
// refused, unless the host's policy lets stacks read them (files that may
// change under the same checkout), and then nothing is cached.
//
// A Cache is for one Host: the daemon's, whose keys (Identities) and
// Redactor do not change while it runs. The stacks it returns are shared:
// callers must not change them.
type Cache struct {
	// Trees names the content of a stack folder, by its real path, with
	// a hash: the tree hash of a checkout's folder. Nil, or when it cannot
	// tell, the real path stands for the content: a checkout is written
	// once per revision and never changed.
	Trees Trees

	mu      sync.Mutex
	entries map[string]cacheEntry // by stack name
	loads   int                   // stacks loaded, not found here: what tests count
}

// Trees names the content of folders (internal/source's FolderTree).
type Trees interface {
	FolderTree(ctx context.Context, dir string) (string, error)
}

// cacheKey is what a load's result depends on.
type cacheKey struct {
	dir     string // the stack folder as asked for, symlinks kept
	content string // its tree hash, or "path:" and its real path
	host    string // hostKey
}

type cacheEntry struct {
	key  cacheKey
	real string // the real folder the entry was last found at
	st   *Stack
	err  error
}

// Load is Load, through the cache.
func (c *Cache) Load(ctx context.Context, repoDir, name string, host Host) (*Stack, error) {
	return c.load(ctx, repoDir, name, host, hostKey(host), true)
}

// LoadForAll is Load as LoadAll loads each stack, through the cache: a
// stack whose compose files say, as written, that it runs on other hosts
// comes back with its targets only, its other files unread.
func (c *Cache) LoadForAll(ctx context.Context, repoDir, name string, host Host) (*Stack, error) {
	return c.load(ctx, repoDir, name, host, hostKey(host), false)
}

// load loads a stack whole, or as loadForAll does; a stack loadForAll
// passed over is no answer to a caller that wants it whole.
func (c *Cache) load(ctx context.Context, repoDir, name string, host Host, hkey string, whole bool) (*Stack, error) {
	if host.policy().PathsOutsideStack {
		return loadStack(ctx, repoDir, name, host, whole, false)
	}
	abs, err := filepath.Abs(repoDir)
	if err != nil {
		return loadStack(ctx, repoDir, name, host, whole, false)
	}
	dir := filepath.Join(abs, "stacks", name)
	real, err := filepath.EvalSymlinks(dir)
	if err != nil {
		return loadStack(ctx, repoDir, name, host, whole, false) // says why, as it would uncached
	}
	usable := func(e cacheEntry) bool { return !whole || e.st == nil || e.st.Project != nil }
	c.mu.Lock()
	e, ok := c.entries[name]
	c.mu.Unlock()
	// The same real folder holds the same files: no need to ask Trees.
	if ok && e.real == real && e.key.dir == dir && e.key.host == hkey && usable(e) {
		return e.st, e.err
	}
	key := cacheKey{dir: dir, content: c.content(ctx, real), host: hkey}
	if ok && e.key == key && usable(e) {
		e.real = real
		c.store(name, e)
		return e.st, e.err
	}
	st, err := loadStack(ctx, repoDir, name, host, whole, false)
	c.mu.Lock()
	c.loads++
	c.mu.Unlock()
	var stackErr *Error
	if err == nil || (errors.As(err, &stackErr) && ctx.Err() == nil) {
		// Only what the files decide is kept: not a cancelled load.
		c.store(name, cacheEntry{key: key, real: real, st: st, err: err})
	}
	return st, err
}

// Loads is how many stacks were loaded, not found in the cache.
func (c *Cache) Loads() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.loads
}

// content names what the real folder holds.
func (c *Cache) content(ctx context.Context, real string) string {
	if c.Trees != nil {
		if tree, err := c.Trees.FolderTree(ctx, real); err == nil {
			return tree
		}
	}
	return "path:" + real
}

func (c *Cache) store(name string, e cacheEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.entries == nil {
		c.entries = map[string]cacheEntry{}
	}
	c.entries[name] = e
}

// hostKey sums up what of the host and the process a load depends on
// besides the files: the interpolation environment (the host's name and
// labels, the process environment), the policy, and whether secrets are
// read.
func hostKey(host Host) string {
	labels := make([]string, 0, len(host.Labels))
	for k, v := range host.Labels {
		labels = append(labels, k+"="+v)
	}
	slices.Sort(labels)
	h := sha256.New()
	fmt.Fprintf(h, "%q\x00%q\x00%#v\x00%t\x00%d\x00", host.Name, labels, host.policy(), host.SkipSecrets, len(host.Identities))
	h.Write([]byte(strings.Join(os.Environ(), "\x00")))
	return hex.EncodeToString(h.Sum(nil))
}

// LoadAll is LoadAll, through the cache. Stacks the revision no longer has
// are forgotten.
func (c *Cache) LoadAll(ctx context.Context, repoDir string, host Host) Result {
	hkey := hostKey(host)
	res := loadAll(ctx, repoDir, host, func(ctx context.Context, repoDir, name string, host Host) (*Stack, error) {
		return c.load(ctx, repoDir, name, host, hkey, false)
	})
	if res.Err == nil {
		present := map[string]bool{}
		for _, st := range res.Stacks {
			present[st.Name] = true
		}
		for name := range res.Invalid {
			present[name] = true
		}
		for _, name := range res.Untargeted {
			present[name] = true
		}
		c.mu.Lock()
		for name := range c.entries {
			if !present[name] {
				delete(c.entries, name)
			}
		}
		c.mu.Unlock()
	}
	return res
}
