// Package health owns the health gate: deciding, from Docker's event
// stream, whether a container that was just started is good enough to keep.
//
// A container with a healthcheck passes when Docker reports it healthy and
// fails when Docker reports it unhealthy, when it dies, or when the deadline
// derived from its healthcheck passes first. A container without one passes
// when it keeps running, without a restart, for the monitor window
// (deploy.update_config.monitor, default 10s). A one-shot container (a
// service others depend on with condition service_completed_successfully)
// passes when it exits 0. The gate listens to events instead of polling
// inspect, so a verdict comes as soon as Docker has one.
//
// Apart from the gate, which waits, Of is a container's health at a glance
// (pure: what the engine reported, no call), and OfAll a stack's, the worst
// of its containers' in the order Healthy < Progressing < Degraded <
// Unknown. `status` and the reconciler both read health through them.
package health

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/compose-spec/compose-go/v2/types"
	"github.com/gitopsd/gitopsd/internal/ids"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/client"
)

// Docker's defaults for a healthcheck's unset fields.
const (
	defaultInterval = 30 * time.Second
	defaultTimeout  = 30 * time.Second
	defaultRetries  = 3
	// DefaultMonitor is compose's deploy.update_config.monitor default as
	// gitopsd uses it: how long a container without healthcheck must run.
	DefaultMonitor = 10 * time.Second
	// slack absorbs the engine's own scheduling of probes.
	slack = 5 * time.Second
)

// Gate is what a container must show to pass.
type Gate struct {
	// HasHealthcheck: wait for Docker's verdict, within Deadline.
	HasHealthcheck bool
	Deadline       time.Duration
	// Monitor: without a healthcheck, how long it must keep running.
	Monitor time.Duration
	// Completes: the container is a one-shot job; it passes when it exits
	// 0 within CompletionDeadline, fails on any other exit code.
	Completes bool
	// RequireHealthcheck: a dependent waits for this service with
	// condition service_healthy, which needs a healthcheck (compose fails
	// the same way when the container has none).
	RequireHealthcheck bool
}

// CompletionDeadline bounds how long a one-shot job may run before its
// gate fails, so a hung job cannot hold a roll forever.
const CompletionDeadline = 10 * time.Minute

// GateFor derives the gate of a service from its healthcheck and
// deploy.update_config.monitor. A disabled healthcheck counts as none; a
// service whose image defines the healthcheck is recognised at Wait time.
func GateFor(svc types.ServiceConfig) Gate {
	g := Gate{Monitor: DefaultMonitor}
	if svc.Deploy != nil && svc.Deploy.UpdateConfig != nil && svc.Deploy.UpdateConfig.Monitor != 0 {
		g.Monitor = time.Duration(svc.Deploy.UpdateConfig.Monitor)
	}
	g.Deadline = deadline(svc.HealthCheck)
	g.HasHealthcheck = svc.HealthCheck != nil && !svc.HealthCheck.Disable && len(svc.HealthCheck.Test) > 0 && svc.HealthCheck.Test[0] != "NONE"
	return g
}

// deadline is the longest a healthy container can take to be reported
// healthy: its start period, then retries+1 probes of interval+timeout.
func deadline(h *types.HealthCheckConfig) time.Duration {
	interval, timeout, start, retries := defaultInterval, defaultTimeout, time.Duration(0), defaultRetries
	if h != nil {
		if h.Interval != nil {
			interval = time.Duration(*h.Interval)
		}
		if h.Timeout != nil {
			timeout = time.Duration(*h.Timeout)
		}
		if h.StartPeriod != nil {
			start = time.Duration(*h.StartPeriod)
		}
		if h.Retries != nil {
			retries = int(*h.Retries)
		}
	}
	return start + time.Duration(retries+1)*(interval+timeout) + slack
}

// Failure says why a container did not pass its gate.
type Failure struct {
	Container string
	Reason    string
}

func (f *Failure) Error() string {
	return fmt.Sprintf("container %s failed its health gate: %s", f.Container, f.Reason)
}

// IsFailure reports whether err is a gate failure (rather than, say, the
// engine being unreachable).
func IsFailure(err error) bool {
	var f *Failure
	return errors.As(err, &f)
}

// Wait blocks until the container passes or fails its gate and returns nil
// or a *Failure; other errors mean no verdict could be reached.
func Wait(ctx context.Context, cli *client.Client, id string, g Gate) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Subscribe before looking, so nothing that happens in between is missed.
	stream := cli.Events(ctx, client.EventsListOptions{Filters: client.Filters{}.Add("type", "container").Add("container", id)})
	res, err := cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
	if err != nil {
		return fmt.Errorf("inspect %s: %w", ids.Short(id), err)
	}
	c := res.Container
	name := strings.TrimPrefix(c.Name, "/")
	fail := func(format string, a ...any) error {
		return &Failure{Container: name, Reason: fmt.Sprintf(format, a...)}
	}
	if g.Completes {
		return waitCompletion(ctx, stream, name, c, fail)
	}
	if c.State == nil || !c.State.Running {
		return fail("not running (exit code %d)", exitCode(c))
	}
	hasCheck := g.HasHealthcheck || (c.State.Health != nil)
	if g.RequireHealthcheck && !hasCheck {
		return fail("has no healthcheck, but a service depends on it with condition service_healthy")
	}
	if hasCheck && c.State.Health != nil {
		switch c.State.Health.Status {
		case container.Healthy:
			return nil
		case container.Unhealthy:
			return fail("unhealthy: %s", lastProbe(c))
		}
	}
	window := g.Monitor
	if hasCheck {
		window = g.Deadline
		if window == 0 {
			window = deadline(nil)
		}
	}
	timer := time.NewTimer(window)
	defer timer.Stop()
	restarts := c.RestartCount
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-stream.Err:
			return fmt.Errorf("watch %s: %w", name, err)
		case <-timer.C:
			if hasCheck {
				return fail("not healthy within %s", window)
			}
			res, err := cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
			if err != nil {
				return fmt.Errorf("inspect %s: %w", name, err)
			}
			if res.Container.State == nil || !res.Container.State.Running || res.Container.RestartCount != restarts {
				return fail("did not keep running for %s", window)
			}
			return nil
		case m := <-stream.Messages:
			switch m.Action {
			case events.ActionHealthStatusHealthy:
				return nil
			case events.ActionHealthStatusUnhealthy:
				res, err := cli.ContainerInspect(ctx, id, client.ContainerInspectOptions{})
				if err != nil {
					return fail("unhealthy")
				}
				return fail("unhealthy: %s", lastProbe(res.Container))
			case events.ActionDie, events.ActionOOM:
				return fail("exited (exit code %s)", m.Actor.Attributes["exitCode"])
			case events.ActionRestart:
				return fail("restarted")
			}
		}
	}
}

// waitCompletion waits for a one-shot container to exit, passing on 0.
func waitCompletion(ctx context.Context, stream client.EventsResult, name string, c container.InspectResponse, fail func(string, ...any) error) error {
	if c.State != nil && !c.State.Running && !c.State.Restarting && c.State.Status != container.StateCreated {
		if c.State.ExitCode == 0 {
			return nil
		}
		return fail("exited (exit code %d)", c.State.ExitCode)
	}
	timer := time.NewTimer(CompletionDeadline)
	defer timer.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case err := <-stream.Err:
			return fmt.Errorf("watch %s: %w", name, err)
		case <-timer.C:
			return fail("did not complete within %s", CompletionDeadline)
		case m := <-stream.Messages:
			if m.Action != events.ActionDie {
				continue
			}
			if code := m.Actor.Attributes["exitCode"]; code != "0" {
				return fail("exited (exit code %s)", code)
			}
			return nil
		}
	}
}

func exitCode(c container.InspectResponse) int {
	if c.State == nil {
		return -1
	}
	return c.State.ExitCode
}

// lastProbe is the output of the last health probe, on one line.
func lastProbe(c container.InspectResponse) string {
	if c.State == nil || c.State.Health == nil || len(c.State.Health.Log) == 0 {
		return "no probe output"
	}
	last := c.State.Health.Log[len(c.State.Health.Log)-1]
	out := strings.Join(strings.Fields(last.Output), " ")
	if len(out) > 200 {
		out = out[:197] + "..."
	}
	return fmt.Sprintf("probe exit %d: %s", last.ExitCode, out)
}
