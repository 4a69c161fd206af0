package daemon

import (
	"context"
	"fmt"
	"slices"
	"strings"
	gosync "sync"
	"time"

	"github.com/gitopsd/gitopsd/internal/fleet"
	"github.com/gitopsd/gitopsd/internal/ids"
	"github.com/gitopsd/gitopsd/internal/metrics"
	"github.com/gitopsd/gitopsd/internal/stack"
	"github.com/gitopsd/gitopsd/internal/store"
	"github.com/gitopsd/gitopsd/internal/sync"
)

// The fleet's rollout (internal/fleet, docs/fleet.md) in the daemon: each
// reconcile reads fleet.yaml and the stacks' x-gitopsd.rollout
// (loadRollouts), and before a stack's new revision is synced,
// rolloutHolds asks fleet.Decide whether this host's wave may take it.
// A held stack keeps what runs; status, history, the log and the metrics
// say why.

// rollouts is what the daemon knows of the rollout of each stack that
// targets this host, from the last reconcile. Memory only: every
// reconcile decides again.
type rollouts struct {
	mu     gosync.Mutex
	stacks map[string]*stackRollout
	proms  map[string]*fleet.PromClient // by Prometheus URL
}

// stackRollout is one stack's rollout on this host.
type stackRollout struct {
	rollout *fleet.Rollout // nil: none
	wave    int
	// held is the revision the rollout holds, and why; "" when none.
	held     string
	decision fleet.Decision
	// said is the revision and verdict last logged and recorded in
	// history, so a hold is said once, not at every poll.
	said [2]string
}

func (s *stackRollout) waveName() string {
	if s == nil || s.rollout == nil {
		return ""
	}
	return s.rollout.WaveName(s.wave)
}

// loadRollouts reads the rollout of each stack res loaded from the head
// (v.views lists those that show another revision, which no rollout
// gates). A fleet.yaml that does not load makes every such stack Invalid,
// naming the file and line; a stack whose x-gitopsd.rollout does not
// makes that one Invalid.
func (d *Daemon) loadRollouts(res *stack.Result, v liveView) {
	base, baseErr := fleet.Load(v.dir)
	host := fleet.Host{Name: d.host.Name, Labels: d.host.Labels}
	fresh, keep := map[string]*stackRollout{}, map[string]bool{}
	res.Stacks = slices.DeleteFunc(res.Stacks, func(st *stack.Stack) bool {
		_, other := v.views[st.Name]
		if baseErr != nil && !other {
			res.Invalid[st.Name] = fmt.Errorf("rollout: %w", baseErr)
			return true
		}
		r, err := fleet.ForStack(st, base)
		switch {
		case err != nil && other:
			keep[st.Name] = true // not gated now: it keeps the wave it had
		case err != nil:
			res.Invalid[st.Name] = fmt.Errorf("rollout: %w", err)
			return true
		default:
			fresh[st.Name] = &stackRollout{rollout: r}
			if r != nil {
				fresh[st.Name].wave = fleet.WaveOf(host, r.Waves)
			}
		}
		return false
	})
	for name := range res.Invalid {
		keep[name] = true // what it was until it loads again
	}
	d.rollouts.mu.Lock()
	defer d.rollouts.mu.Unlock()
	for name, old := range d.rollouts.stacks {
		switch f := fresh[name]; {
		case keep[name]:
			fresh[name] = old
		case f != nil:
			f.held, f.decision, f.said = old.held, old.decision, old.said
		}
	}
	d.rollouts.stacks = fresh
}

// rolloutHolds says whether the rollout holds revision rev of st on this
// host now, and if so records it. Only a new revision of the branch is
// gated: not a pin, a rollback, nor a stack that runs rev already (a
// drift heal, a retry of a sync that failed before it changed anything).
// `sync STACK --skip-wave` lets it through. moving is false for a stack
// with nothing to deploy (steady), which is never held.
func (d *Daemon) rolloutHolds(ctx context.Context, st *stack.Stack, state store.StackState, moving bool, rev, head string, trigger sync.Trigger) bool {
	d.rollouts.mu.Lock()
	sr := d.rollouts.stacks[st.Name]
	d.rollouts.mu.Unlock()
	if sr == nil || sr.rollout == nil || sr.wave == 0 || !moving || rev != head || trigger == sync.TriggerRollback || state.Revision == rev {
		d.releaseRollout(st.Name)
		return false
	}
	if trigger == sync.TriggerSkipWave {
		d.log.Warn("rollout: wave skipped by the operator", "stack", st.Name, "revision", ids.Short(rev), "wave", sr.waveName())
		d.releaseRollout(st.Name)
		return false
	}
	dec := d.decide(ctx, st.Name, sr, rev)
	if !dec.Held() {
		if dec.Reason != "" {
			d.log.Warn("rollout: applying", "stack", st.Name, "revision", ids.Short(rev), "wave", sr.waveName(), "reason", dec.Reason)
		}
		d.releaseRollout(st.Name)
		return false
	}
	d.rollouts.mu.Lock()
	sr.held, sr.decision = rev, dec
	say := sr.said != [2]string{rev, string(dec.Verdict)}
	sr.said = [2]string{rev, string(dec.Verdict)}
	if wait := dec.Until.Sub(d.now()); !dec.Until.IsZero() && wait < d.cfg.Source.Interval {
		// A time stagger knows when the wave starts: poll then, not up to
		// an interval later. Polls merge, so a spare wake costs nothing.
		time.AfterFunc(wait, func() { d.wantSync(sync.TriggerPoll) })
	}
	d.rollouts.mu.Unlock()
	if say {
		d.log.Warn("held by rollout", "stack", st.Name, "revision", ids.Short(rev), "wave", sr.waveName(), "verdict", dec.Verdict, "reason", dec.Reason)
	}
	if err := d.rec.HoldForRollout(ctx, st.Name, rev, trigger, holdText(dec), say); err != nil {
		d.log.Error("record the rollout's hold", "stack", st.Name, "err", err)
	}
	return true
}

// decide asks fleet.Decide about rev for a stack whose wave is not the
// first. A revision halted by a rollback stays halted until the next
// commit, so Prometheus is not asked again for it.
func (d *Daemon) decide(ctx context.Context, name string, sr *stackRollout, rev string) fleet.Decision {
	d.rollouts.mu.Lock()
	if sr.held == rev && sr.decision.Verdict == fleet.Halted {
		dec := sr.decision
		d.rollouts.mu.Unlock()
		return dec
	}
	d.rollouts.mu.Unlock()
	in := fleet.Input{Rollout: sr.rollout, Wave: sr.wave, Revision: rev, Now: d.now()}
	if sr.rollout.Gate == nil {
		r, err := d.source.Lookup(ctx, rev)
		if err != nil {
			return fleet.Decision{Verdict: fleet.GateError, Reason: fmt.Sprintf("read the commit time of %s for the time stagger: %v", ids.Short(rev), err)}
		}
		in.CommitTime = r.Time
	} else {
		in.Observed = fleet.Observe(ctx, d.prom(sr.rollout.Gate.PrometheusURL), name, rev)
	}
	return fleet.Decide(in)
}

// prom is the client of the Prometheus at url, one per URL.
func (d *Daemon) prom(url string) *fleet.PromClient {
	d.rollouts.mu.Lock()
	defer d.rollouts.mu.Unlock()
	if d.rollouts.proms == nil {
		d.rollouts.proms = map[string]*fleet.PromClient{}
	}
	c, ok := d.rollouts.proms[url]
	if !ok {
		c = &fleet.PromClient{URL: url}
		d.rollouts.proms[url] = c
	}
	return c
}

// releaseRollout says the rollout no longer holds the stack.
func (d *Daemon) releaseRollout(name string) {
	d.rollouts.mu.Lock()
	defer d.rollouts.mu.Unlock()
	if sr := d.rollouts.stacks[name]; sr != nil {
		sr.held, sr.decision = "", fleet.Decision{}
	}
}

// holdText is the hold as status and history say it.
func holdText(dec fleet.Decision) string {
	if strings.HasPrefix(dec.Reason, "held by rollout") {
		return dec.Reason
	}
	return "held by rollout: " + dec.Reason
}

// rolloutHold is what status says of a stack the rollout holds ("": not held).
func (d *Daemon) rolloutHold(name string) string {
	d.rollouts.mu.Lock()
	defer d.rollouts.mu.Unlock()
	if sr := d.rollouts.stacks[name]; sr != nil && sr.held != "" {
		return holdText(sr.decision)
	}
	return ""
}

// rolloutMetrics is what the rollout metrics say at a scrape: for each
// stack that targets this host and whose rollout a reconcile has read, its
// wave, since when it runs its revision healthy (kept in the store, so a
// restart does not restart the soak), the revision it holds as rolled
// back, and the revision the rollout holds.
func (d *Daemon) rolloutMetrics(ctx context.Context) ([]metrics.RolloutStack, error) {
	rows, err := d.store.Stacks(ctx)
	if err != nil {
		return nil, err
	}
	since, err := d.noteHealthy(ctx, rows)
	if err != nil {
		// A store that cannot be written (a full state_dir) must not take
		// this host out of every gate's count: say what is recorded.
		d.log.Warn("rollout: record since when stacks run healthy", "err", err)
		if since, err = d.store.HealthySinces(ctx); err != nil {
			return nil, err
		}
	}
	d.rollouts.mu.Lock()
	defer d.rollouts.mu.Unlock()
	var out []metrics.RolloutStack
	for _, s := range rows {
		sr, ok := d.rollouts.stacks[s.Name]
		if !ok {
			continue // its wave is not known yet
		}
		m := metrics.RolloutStack{Stack: s.Name, Wave: sr.waveName(), RolledBack: s.FailedRevision}
		if h, ok := since[s.Name]; ok {
			m.HealthyRevision, m.HealthySince = h.Revision, h.Since
		}
		if sr.held != "" {
			m.HeldRevision, m.HeldVerdict = sr.held, string(sr.decision.Verdict)
		}
		out = append(out, m)
	}
	return out, nil
}

// noteHealthy brings the store's healthy-since rows in line with the
// stacks' rows: a stack Synced and Healthy on its revision keeps the time
// it was first seen so on that revision, any other has none. It returns
// the rows kept.
func (d *Daemon) noteHealthy(ctx context.Context, rows []store.StackState) (map[string]store.HealthySince, error) {
	since, err := d.store.HealthySinces(ctx)
	if err != nil {
		return nil, err
	}
	kept := map[string]store.HealthySince{}
	for _, s := range rows {
		h, had := since[s.Name]
		delete(since, s.Name)
		if s.Sync != string(sync.Synced) || s.Health != string(sync.Healthy) || s.Revision == "" {
			if had {
				if err := d.store.DeleteHealthySince(ctx, s.Name); err != nil {
					return nil, err
				}
			}
			continue
		}
		if !had || h.Revision != s.Revision {
			h = store.HealthySince{Stack: s.Name, Revision: s.Revision, Since: d.now()}
			if err := d.store.PutHealthySince(ctx, h); err != nil {
				return nil, err
			}
		}
		kept[s.Name] = h
	}
	for name := range since { // stacks gone
		if err := d.store.DeleteHealthySince(ctx, name); err != nil {
			return nil, err
		}
	}
	return kept, nil
}

// noteRollout refreshes the healthy-since rows after a stack converged,
// so the soak of a revision starts when it was applied, not at the next
// scrape.
func (d *Daemon) noteRollout(ctx context.Context) {
	rows, err := d.store.Stacks(ctx)
	if err == nil {
		_, err = d.noteHealthy(ctx, rows)
	}
	if err != nil {
		d.log.Warn("rollout: record since when stacks run healthy", "err", err)
	}
}
