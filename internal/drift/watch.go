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
	events.ActionCreate, events.ActionStart, events.ActionDie, events.ActionStop,
	events.ActionDestroy, events.ActionRename, events.ActionPause, events.ActionUnPause, events.ActionUpdate,
}

// imageActions can move a tag to another image.
var imageActions = []events.Action{events.ActionTag, events.ActionUnTag, events.ActionPull, events.ActionLoad, events.ActionImport}

// Watch follows the engine's events until ctx ends and calls poke with the
// compose project of each container event that may be drift, and with ""
// (every stack) for image tag events and after each connection, since
// events are missed while the engine is away (restarted, upgraded). It
// reconnects on its own, waiting up to 5s between attempts.
func Watch(ctx context.Context, cli *client.Client, log *slog.Logger, poke func(project string)) {
	c := &coalescer{fire: poke, pending: map[string]*burst{}}
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
		err := follow(ctx, cli, c, poke)
		if ctx.Err() != nil {
			return
		}
		log.Warn("docker event stream ended; reconnecting", "err", err)
		sleep(ctx, wait)
	}
}

// follow reads both event streams until one ends, and returns why.
func follow(ctx context.Context, cli *client.Client, c *coalescer, poke func(string)) error {
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
	poke("")
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
				c.add(p)
			}
		case <-images.Messages:
			c.add("")
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
	fire    func(project string)
	mu      sync.Mutex
	pending map[string]*burst
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
	time.AfterFunc(settle, func() { c.due(project) })
}

// due fires a project's burst once it settled, or re-arms for the rest.
func (c *coalescer) due(project string) {
	now := time.Now()
	c.mu.Lock()
	b := c.pending[project]
	quiet := now.Sub(b.last)
	if quiet < settle && now.Sub(b.first) < maxDelay {
		left := min(settle-quiet, maxDelay-now.Sub(b.first))
		c.mu.Unlock()
		time.AfterFunc(left, func() { c.due(project) })
		return
	}
	delete(c.pending, project)
	c.mu.Unlock()
	c.fire(project)
}
