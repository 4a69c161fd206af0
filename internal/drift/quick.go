package drift

import (
	"context"
	"time"

	cerrdefs "github.com/containerd/errdefs"

	"github.com/gitopsd/gitopsd/internal/ids"
	"github.com/gitopsd/gitopsd/internal/stack"
	"github.com/gitopsd/gitopsd/internal/store"
	"github.com/gitopsd/gitopsd/internal/sync"
)

// The quick heal: a container of a steady stack that someone stopped (or
// paused) by hand is started (or unpaused) at its event, before the events
// settle and without loading or planning the stack. It acts only where the
// settled check would do exactly that: the container existed, as specified,
// at the stack's last clean look (Controller.Check with nothing drifted), it
// carries the same name and config hash now, and it is stopped, not being
// removed. Everything else (a container removed, created or changed by
// hand, a crash) is the settled check's, which follows anyway and sees
// what the quick heal left. A crash is told from a stop by its events: a
// `docker stop` or `docker kill` sends kill (and stop) before die, a crash
// only die; crashes go through the heal's health gate and its backoff.

// QuickContainer is what the quick heal reads of one container.
type QuickContainer struct {
	ID, Name, Project, Service, ConfigHash string
	State                                  string // created, running, paused, restarting, removing, exited, dead
}

// Quick is what the quick heal needs of the engine and the record.
type Quick interface {
	// List lists the project's containers from one listing, uninspected.
	List(ctx context.Context, project string) ([]QuickContainer, error)
	// Inspect reads one container now.
	Inspect(ctx context.Context, id string) (QuickContainer, error)
	// Up says, just before a start, whether the engine is not going
	// down: a shutdown stops every container (kill, then die, as a stop
	// by hand), and one started under it does not come back with the
	// engine. nil when it is up.
	Up(ctx context.Context) error
	Start(ctx context.Context, id string) error
	Unpause(ctx context.Context, id string) error
	// Held says why the container must not be touched now (a backup job
	// stopped it and has not started it again; the record is held), ""
	// when nothing holds it.
	Held(ctx context.Context, stack, id string) (string, error)
	// RecordHeal records the heal as a deployment of the stack's revision
	// (trigger heal), begun at began.
	RecordHeal(ctx context.Context, stack, revision string, began time.Time) error
}

// known is a stack as its last clean look saw it: every container then was
// as the revision specifies.
type known struct {
	revision   string
	containers map[string]QuickContainer // by ID
}

// listing is the containers of a stack listed before a look compares it.
type listing struct {
	revision   string
	containers []QuickContainer
}

// listBefore lists a stack's containers before the look compares it, when
// its stops may be healed at once and the stack is not known at revision
// yet. Listed first, every container still there when the comparison
// observes the stack was vetted by it: containers change only through
// events that make the controller forget the stack (update, rename), and
// one created after the listing is not in it.
func (c *Controller) listBefore(ctx context.Context, st *stack.Stack, revision string) *listing {
	if c.Quick == nil || st.Options.Drift != stack.DriftHeal {
		return nil
	}
	c.quickMu.Lock()
	k, ok := c.known[st.Name]
	if !ok || k.revision != revision {
		if c.listed == nil {
			c.listed = map[string]bool{}
		}
		c.listed[st.Name] = true // until Forget says the stack changed
	}
	c.quickMu.Unlock()
	if ok && k.revision == revision {
		return nil
	}
	listed, err := c.Quick.List(ctx, st.Name)
	if err != nil {
		c.Log.Debug("quick heal: list the stack's containers; its stops wait for the settled check", "stack", st.Name, "err", err)
		return nil
	}
	return &listing{revision: revision, containers: listed}
}

// learn remembers what a clean look saw, unless the stack changed since
// its listing.
func (c *Controller) learn(name string, l *listing) {
	k := known{revision: l.revision, containers: map[string]QuickContainer{}}
	for _, x := range l.containers {
		k.containers[x.ID] = x
	}
	c.quickMu.Lock()
	defer c.quickMu.Unlock()
	fresh := c.listed[name]
	delete(c.listed, name)
	if !fresh {
		return
	}
	if c.known == nil {
		c.known = map[string]known{}
	}
	c.known[name] = k
}

// Forget drops what the last clean look saw of a stack: one of its
// containers was created, removed, renamed or updated, or it was deployed.
// Its next stop waits for the settled check, which learns it again.
func (c *Controller) Forget(name string) {
	c.quickMu.Lock()
	defer c.quickMu.Unlock()
	delete(c.known, name)
	if c.listed[name] {
		c.listed[name] = false // a listing under way is stale
	}
}

// QuickReady says whether a stop of the stack's containers can be healed
// at once (for tests).
func (c *Controller) QuickReady(name string) bool {
	c.quickMu.Lock()
	defer c.quickMu.Unlock()
	_, ok := c.known[name]
	return ok
}

// QuickHeals is how many containers the quick heal started or unpaused.
func (c *Controller) QuickHeals() int64 { return c.quickHeals.Load() }

// QuickHeal starts (or unpauses) container id of stack state.Name at once
// when it is safe to (see above); view is the revision whose files the
// live view shows for the stack. It reports whether it did. It runs on the
// daemon's loop, like every heal: a roll, a restore or a backup job's stop
// is never under way meanwhile, and what they stopped is back or gone when
// it runs.
func (c *Controller) QuickHeal(ctx context.Context, state store.StackState, view, id string) bool {
	if c.Quick == nil {
		return false
	}
	c.quickMu.Lock()
	k, ok := c.known[state.Name]
	was, mine := k.containers[id]
	c.quickMu.Unlock()
	if !ok || !mine || k.revision != state.Revision || !RunsItsView(state, view) {
		return false
	}
	key := backoffKey(state.Name, was.Service)
	if now := c.now(); c.Backoff.Wait(key, now) > 0 || c.Backoff.Struggling(key, now) {
		return false
	}
	log := c.Log.With("stack", state.Name, "service", was.Service, "container", was.Name)
	if why, err := c.Quick.Held(ctx, state.Name, id); err != nil || why != "" {
		log.Debug("quick heal: the container is held; left to the settled check", "held", why, "err", err)
		return false
	}
	now, err := c.Quick.Inspect(ctx, id)
	if err != nil {
		if !cerrdefs.IsNotFound(err) {
			log.Debug("quick heal: inspect", "err", err)
		}
		return false
	}
	if now.Name != was.Name || now.ConfigHash != was.ConfigHash || now.Project != state.Name {
		return false
	}
	if err := c.Quick.Up(ctx); err != nil {
		log.Info("quick heal: the engine is going down; the check after it is back heals", "err", err)
		return false
	}
	began := c.now()
	switch now.State {
	case "exited":
		err = c.Quick.Start(ctx, id)
	case "paused":
		err = c.Quick.Unpause(ctx, id)
	default:
		return false // running (Docker's restart policy was first), restarting, being removed: not ours
	}
	if err != nil {
		// Removed or changed under us: the settled check sees what it is.
		log.Debug("quick heal failed; left to the settled check", "err", err)
		return false
	}
	c.quickHeals.Add(1)
	log.Info("started a stopped container at once", "was", now.State, "id", ids.Short(id), "took", c.now().Sub(began).Round(time.Millisecond))
	// Recorded after the start, as every heal: the service waits for no
	// write. The settled check that follows closes the drift as healed.
	f := Finding{Stack: state.Name, Service: was.Service, Container: was.Name, Kind: Stopped, Detail: "container " + now.State}
	c.quickMu.Lock()
	if c.quickHealed == nil {
		c.quickHealed = map[string]bool{}
	}
	c.quickHealed[f.Key()] = true
	c.quickMu.Unlock()
	if err := c.open(ctx, f, began); err != nil {
		c.noteStore("record drift of stack "+state.Name, err)
	}
	if err := c.Quick.RecordHeal(ctx, state.Name, state.Revision, began); err != nil {
		c.noteStore("record a heal of stack "+state.Name, err)
	}
	return true
}

// closedBy is how a drift no longer seen is closed: as healed when the
// quick heal put it back, else as by.
func (c *Controller) closedBy(key, by string) string {
	c.quickMu.Lock()
	defer c.quickMu.Unlock()
	if c.quickHealed[key] {
		delete(c.quickHealed, key)
		return ClosedHealed
	}
	return by
}

// afterCheck learns a stack its look found clean under the heal policy,
// from the listing made before the look, and forgets any other: only a
// steady stack's stops are healed at once. A look that healed learns
// nothing: its listing predates the heal's containers.
func (c *Controller) afterCheck(name string, l *listing, healed bool, findings []Finding, health sync.Health, healErr error) {
	if c.Quick == nil {
		return
	}
	if len(findings) > 0 || healErr != nil || health == sync.Unknown {
		c.Forget(name)
		return
	}
	if l != nil && !healed {
		c.learn(name, l)
	}
}
