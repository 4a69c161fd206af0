package drift

import (
	"context"
	"log/slog"
	"sync"
	"time"

	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/client"

	"github.com/gitopsd/gitopsd/internal/engine"
)

// Timing of Watch: a burst of events of one project (docker rm -f sends
// kill, die, stop and destroy) is coalesced into one poke once it has been
// quiet for settle, and at most maxDelay after its first event.
const (
	settle   = 150 * time.Millisecond
	maxDelay = time.Second
)

// containerActions are the container events that can mean drift. Health
// status changes and exec events (every healthcheck probe is one) are left
// out: they are no drift, and they are most of the stream.
var containerActions = []events.Action{
	events.ActionCreate, events.ActionStart, events.ActionKill, events.ActionDie, events.ActionStop,
	events.ActionDestroy, events.ActionRename, events.ActionPause, events.ActionUnPause, events.ActionUpdate,
}

// changeActions change which containers a project has, or what one is:
// the quick heal forgets the project until its next clean look.
var changeActions = map[events.Action]bool{
	events.ActionCreate: true, events.ActionDestroy: true, events.ActionRename: true, events.ActionUpdate: true,
}

// killedFor is how long a kill event marks a container's die as a stop by
// hand rather than a crash: a stop's grace period is 10s by default.
const killedFor = time.Minute

// Handlers are what Watch tells of the events.
type Handlers struct {
	// Poke gets the compose project of each container event that may be
	// drift (after the burst settled), and "" (every stack) for image tag
	// events and after each connection.
	Poke func(project string)
	// Down gets a container stopped, killed or paused through the API (a
	// `docker stop`, `kill` or `pause`) at once: its die after a kill (a
	// stop sends kill first; its stop event, after the die, adds
	// nothing), its pause. A crash (a die with no kill before it) is not
	// told, nor is a die after a start that followed a kill. Nil: not told.
	Down func(project, id string)
	// Changed gets the project of a container created, removed, renamed
	// or updated, at once. Nil: not told.
	Changed func(project string)
	// Lost is told when the event stream ends (the engine may be going
	// down or gone): the stops told to Down before are void, the look
	// after the next connection is the one that heals. Nil: not told.
	Lost func()
	// Settle replaces how long a burst must be quiet before Poke (0: 150
	// ms); tests that must tell the quick heal from the settled check
	// stretch it.
	Settle time.Duration
}

// imageActions can move a tag to another image.
var imageActions = []events.Action{events.ActionTag, events.ActionUnTag, events.ActionPull, events.ActionLoad, events.ActionImport}

// Watch follows the engine's events until ctx ends and tells h of them:
// Poke after each connection too, since events are missed while the
// engine is away (restarted, upgraded). It reconnects on its own, waiting
// up to 5s between attempts.
func Watch(ctx context.Context, cli *client.Client, log *slog.Logger, h Handlers) {
	c := &coalescer{fire: h.Poke, pending: map[string]*burst{}, settle: settle, maxDelay: maxDelay}
	if h.Settle > 0 {
		c.settle, c.maxDelay = h.Settle, max(h.Settle, maxDelay)
	}
	wait := 100 * time.Millisecond
	for ctx.Err() == nil {
		if _, err := cli.Ping(ctx, client.PingOptions{}); err != nil {
			if ctx.Err() == nil {
				log.Warn("docker engine unreachable; drift events resume when it answers", "err", err, "retry_in", wait)
			}
			sleep(ctx, wait)
			wait = min(wait*2, 5*time.Second)
			continue
		}
		wait = 100 * time.Millisecond
		err := follow(ctx, cli, c, h)
		if ctx.Err() != nil {
			return
		}
		if h.Lost != nil {
			h.Lost()
		}
		log.Warn("docker event stream ended; reconnecting", "err", err)
		sleep(ctx, wait)
	}
}

// follow reads both event streams until one ends, and returns why.
func follow(ctx context.Context, cli *client.Client, c *coalescer, h Handlers) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	cf := client.Filters{}.Add("type", string(events.ContainerEventType)).Add("label", engine.LabelProject)
	for _, a := range containerActions {
		cf = cf.Add("event", string(a))
	}
	imf := client.Filters{}.Add("type", string(events.ImageEventType))
	for _, a := range imageActions {
		imf = imf.Add("event", string(a))
	}
	containers := cli.Events(ctx, client.EventsListOptions{Filters: cf})
	images := cli.Events(ctx, client.EventsListOptions{Filters: imf})
	// Subscribed: whatever happened while we were not is found by a full look.
	h.Poke("")
	killed := map[string]time.Time{} // container ID: when a kill event came
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-containers.Err:
			return err
		case err := <-images.Err:
			return err
		case m := <-containers.Messages:
			if p := m.Actor.Attributes[engine.LabelProject]; p != "" {
				tell(h, killed, p, m)
				c.add(p)
			}
		case <-images.Messages:
			c.add("")
		}
	}
}

// tell tells h.Down and h.Changed of a container event of project p.
func tell(h Handlers, killed map[string]time.Time, p string, m events.Message) {
	id := m.Actor.ID
	switch {
	case changeActions[m.Action]:
		delete(killed, id)
		if h.Changed != nil {
			h.Changed(p)
		}
	case m.Action == events.ActionKill:
		now := time.Now()
		for k, at := range killed {
			if now.Sub(at) > killedFor {
				delete(killed, k)
			}
		}
		killed[id] = now
	case m.Action == events.ActionDie:
		at, ok := killed[id]
		delete(killed, id)
		if ok && time.Since(at) <= killedFor && h.Down != nil {
			h.Down(p, id)
		}
	case m.Action == events.ActionPause:
		if h.Down != nil {
			h.Down(p, id)
		}
	}
}

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}

// coalescer turns bursts of events per project into one call of fire.
type coalescer struct {
	fire             func(project string)
	settle, maxDelay time.Duration
	mu               sync.Mutex
	pending          map[string]*burst
}

type burst struct{ first, last time.Time }

func (c *coalescer) add(project string) {
	now := time.Now()
	c.mu.Lock()
	defer c.mu.Unlock()
	if b, ok := c.pending[project]; ok {
		b.last = now
		return
	}
	c.pending[project] = &burst{first: now, last: now}
	time.AfterFunc(c.settle, func() { c.due(project) })
}

// due fires a project's burst once it settled, or re-arms for the rest.
func (c *coalescer) due(project string) {
	now := time.Now()
	c.mu.Lock()
	b := c.pending[project]
	quiet := now.Sub(b.last)
	if quiet < c.settle && now.Sub(b.first) < c.maxDelay {
		left := min(c.settle-quiet, c.maxDelay-now.Sub(b.first))
		c.mu.Unlock()
		time.AfterFunc(left, func() { c.due(project) })
		return
	}
	delete(c.pending, project)
	c.mu.Unlock()
	c.fire(project)
}
