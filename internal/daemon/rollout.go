package daemon

import (
	"context"
	"fmt"
	"slices"
	"strings"
	gosync "sync"
	"time"

	"github.com/gitopsd/gitopsd/internal/drift"
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
// A held stack keeps what runs, and the files it runs: the live view
// shows it the revision it runs (heldStacks keeps a stack whose wave is
// not the first there until the rollout has been asked, releaseView moves
// it to the head's files once the rollout lets the head through), so a
// container that restarts re-reads the bind-mounted files of its own
// revision. It is checked for drift against that revision, at polls
// (checkHeld) and on Docker's events, and healed or reported per its
// policy like any steady stack. status, history, the log and the metrics
// say why it is held.

// rollouts is what the daemon knows of the rollout of each stack that
// targets this host, from the last reconcile. Memory only: every
// reconcile decides again.
type rollouts struct {
	mu     gosync.Mutex
	stacks map[string]*stackRollout
	proms  map[string]*fleet.PromClient // by Prometheus URL
	// noting: one noteRollout at a time, as stacks converge side by side
	// and each reads and writes every stack's healthy-since row.
	noting gosync.Mutex
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
// gates, but for the gated ones: their rollout is read from the head's
// files). A fleet.yaml that does not load makes every such stack Invalid,
// naming the file and line; a stack whose x-gitopsd.rollout does not
// makes that one Invalid, as does a gated stack that does not load at the
// head; a gated stack that no longer targets this host at the head is
// dropped, so apply removes it.
func (d *Daemon) loadRollouts(ctx context.Context, res *stack.Result, v liveView) {
	base, baseErr := fleet.Load(v.dir)
	host := fleet.Host{Name: d.host.Name, Labels: d.host.Labels}
	fresh, keep := map[string]*stackRollout{}, map[string]bool{}
	res.Stacks = slices.DeleteFunc(res.Stacks, func(st *stack.Stack) bool {
		_, other := v.views[st.Name]
		other = other && !v.gated[st.Name]
		if baseErr != nil && !other {
			res.Invalid[st.Name] = fmt.Errorf("rollout: %w", baseErr)
			return true
		}
		atHead := st
		if v.gated[st.Name] {
			var err error
			switch atHead, err = d.heads.LoadForAll(ctx, v.dir, st.Name, d.host); {
			case err != nil:
				res.Invalid[st.Name] = err
				return true
			case !atHead.Options.Targets.Match(d.host):
				return true // it left this host: removed, as any stack that leaves
			}
		}
		r, err := fleet.ForStack(atHead, base)
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

// rolloutGates says whether the rollout may hold the head for a stack
// (state): it runs another revision, and the last reconcile read a wave
// that is not the first for it, or read nothing of it (the first since a
// start). A rollout that a commit brings in where there was none is not
// known before it is read: that first hold moves the stack back to its
// files in checkHeld.
func (d *Daemon) rolloutGates(state store.StackState, head string) bool {
	if state.Revision == "" || state.Revision == head {
		return false
	}
	d.rollouts.mu.Lock()
	defer d.rollouts.mu.Unlock()
	sr := d.rollouts.stacks[state.Name]
	return sr == nil || (sr.rollout != nil && sr.wave > 0)
}

// checkHeld keeps a stack the rollout holds on the files of the revision
// it runs (state.Revision) and looks at it for drift against that
// revision, healed or reported per its policy, as at any poll. st is the
// stack as converge loaded it: from those files when it was gated, from
// the head's when the rollout came with the head.
func (d *Daemon) checkHeld(ctx context.Context, st *stack.Stack, state store.StackState, v liveView) error {
	if state.Revision == "" {
		return nil // nothing runs yet: a new stack held
	}
	if !v.gated[st.Name] {
		dir, err := d.source.Checkout(ctx, state.Revision)
		if err != nil {
			return fmt.Errorf("check out %s for held stack %s: %w", ids.Short(state.Revision), st.Name, err)
		}
		if err := relinkLive(d.cfg.StateDir, dir, st.Name); err != nil {
			return fmt.Errorf("held stack %s: %w", st.Name, err)
		}
		d.setView(st.Name, state.Revision)
		if st, err = d.stacks.Load(ctx, v.live, st.Name, d.host); err != nil {
			return fmt.Errorf("load held stack %s at %s: %w", state.Name, ids.Short(state.Revision), err)
		}
	}
	if !drift.RunsItsView(state, state.Revision) {
		return nil // a sync of it did not end: the next one that is let through will
	}
	return d.drifts.Check(ctx, st, state, true)
}

// releaseView moves a gated stack that the rollout lets through to the
// head's files and loads it from them. If it does not load, its link
// goes back to the revision it runs.
func (d *Daemon) releaseView(ctx context.Context, name, head string, state store.StackState, v liveView) (*stack.Stack, error) {
	if err := relinkLive(d.cfg.StateDir, v.dir, name); err != nil {
		return nil, fmt.Errorf("stack %s: %w", name, err)
	}
	d.setView(name, head)
	st, err := d.stacks.Load(ctx, v.live, name, d.host)
	if err != nil {
		if back := relinkLive(d.cfg.StateDir, v.held[name], name); back == nil {
			d.setView(name, state.Revision)
		}
		return nil, fmt.Errorf("load stack %s: %w", name, err)
	}
	return st, nil
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
	d.rollouts.noting.Lock()
	defer d.rollouts.noting.Unlock()
	rows, err := d.store.Stacks(ctx)
	if err == nil {
		_, err = d.noteHealthy(ctx, rows)
	}
	if err != nil {
		d.log.Warn("rollout: record since when stacks run healthy", "err", err)
	}
}
