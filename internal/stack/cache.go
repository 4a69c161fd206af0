package stack

import (
	"context"
	"errors"
	"path/filepath"
	"sync"
)

// Cache keeps loaded stacks by the real folder they were loaded from. A
// checkout is written once per revision and never changed, so the same real
// folder loads to the same stack: a poll that finds nothing new, and every
// drift check, then load nothing again. Loading is most of a no-op
// reconcile's cost (compose-go compiles its JSON schema on every load).
//
// A Cache is for one Host: the daemon's, which does not change while it
// runs. When the host's policy lets stacks read paths outside their folder
// (files that may change under the same checkout), nothing is cached.
// The stacks it returns are shared: callers must not change them.
type Cache struct {
	mu      sync.Mutex
	entries map[string]cacheEntry // by stack name
}

type cacheEntry struct {
	real string // the stack folder, symlinks resolved
	st   *Stack
	err  error
}

// Load is Load, through the cache.
func (c *Cache) Load(ctx context.Context, repoDir, name string, host Host) (*Stack, error) {
	return c.load(ctx, repoDir, name, host, true)
}

// loadForAll is loadForAll, through the cache.
func (c *Cache) loadForAll(ctx context.Context, repoDir, name string, host Host) (*Stack, error) {
	return c.load(ctx, repoDir, name, host, false)
}

// load loads a stack whole, or as loadForAll does; a stack loadForAll
// passed over is no answer to a caller that wants it whole.
func (c *Cache) load(ctx context.Context, repoDir, name string, host Host, whole bool) (*Stack, error) {
	if host.policy().PathsOutsideStack {
		return loadStack(ctx, repoDir, name, host, whole, false)
	}
	real, err := filepath.EvalSymlinks(filepath.Join(repoDir, "stacks", name))
	if err != nil {
		return loadStack(ctx, repoDir, name, host, whole, false) // says why, as it would uncached
	}
	c.mu.Lock()
	e, ok := c.entries[name]
	c.mu.Unlock()
	if ok && e.real == real && (!whole || e.st == nil || e.st.Project != nil) {
		return e.st, e.err
	}
	st, err := loadStack(ctx, repoDir, name, host, whole, false)
	var stackErr *Error
	if err == nil || (errors.As(err, &stackErr) && ctx.Err() == nil) {
		// Only what the files decide is kept: not a cancelled load.
		c.mu.Lock()
		if c.entries == nil {
			c.entries = map[string]cacheEntry{}
		}
		c.entries[name] = cacheEntry{real: real, st: st, err: err}
		c.mu.Unlock()
	}
	return st, err
}

// LoadAll is LoadAll, through the cache. Stacks the revision no longer has
// are forgotten.
func (c *Cache) LoadAll(ctx context.Context, repoDir string, host Host) Result {
	res := loadAll(ctx, repoDir, host, c.loadForAll)
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
