package fleet

import (
	"fmt"
	"math"
	"sort"
	"time"
)

// Input is everything a host knows when it decides whether to apply
// revision Revision of a stack. It is values only: the decision is a pure
// function of it, tested without Prometheus or a clock.
type Input struct {
	Rollout  *Rollout // nil: no rollout, apply at once
	Wave     int      // this host's wave (WaveOf)
	Revision string
	// CommitTime is the committer time of Revision: every host reads the
	// same one, so without a gate every host computes the same stagger
	// without talking to any other.
	CommitTime time.Time
	Now        time.Time
	// Observed is what the gate read of the fleet for this stack and
	// revision; unused without a gate.
	Observed Observation
	// SkipWave is the operator's override (`gitopsd sync STACK --skip-wave`).
	SkipWave bool
}

// Observation is the gate's reading of the fleet for one stack and revision.
type Observation struct {
	// Waves by name: the hosts of each wave that target the stack.
	Waves map[string]WaveState
	// RolledBack are the hosts that rolled the revision back.
	RolledBack []HostRef
	// Err says the gate could not be asked; the rest is then empty.
	Err error
}

// WaveState is one wave's part of an Observation.
type WaveState struct {
	Targeting int // hosts of the wave that target the stack
	// HealthySince holds, per host of the wave running the revision Synced
	// and Healthy, since when it has.
	HealthySince []time.Time
}

// HostRef is a host and the wave it is in.
type HostRef struct{ Host, Wave string }

// Verdict is what a host does with a revision.
type Verdict string

const (
	Apply Verdict = "apply"
	// Wait: the previous wave is not done with the revision yet.
	Wait Verdict = "wait"
	// Halted: a host of an earlier wave rolled the revision back; the
	// next commit to the stack starts a new rollout.
	Halted Verdict = "halted"
	// GateError: the gate could not be asked and on_error is hold.
	GateError Verdict = "gate_error"
)

// Decision is the verdict and, unless Apply, why, in words for status and
// history.
type Decision struct {
	Verdict Verdict
	Reason  string
	// Until is, for a time stagger, when the wait ends; zero otherwise
	// (the gate must be asked again).
	Until time.Time
}

// Held says whether the host keeps what runs.
func (d Decision) Held() bool { return d.Verdict != Apply }

// Decide says whether this host may apply the revision now.
//
// Wave 0 always may. A later wave k may once the previous wave is done
// with the revision: with a gate, once Healthy of the hosts of the nearest
// earlier wave that has hosts targeting the stack have run the revision
// Synced and Healthy for Soak (by Prometheus), and no host of an earlier
// wave rolled it back; without a gate, once k × Soak has passed since the
// revision's commit time (a time stagger only: nothing is observed, so a
// rollback elsewhere halts nothing).
func Decide(in Input) Decision {
	r := in.Rollout
	if r == nil || in.Wave == 0 {
		return Decision{Verdict: Apply}
	}
	if in.SkipWave {
		return Decision{Verdict: Apply, Reason: "wave skipped by the operator"}
	}
	rev := short(in.Revision)
	if r.Gate == nil {
		until := in.CommitTime.Add(time.Duration(in.Wave) * r.Soak)
		if in.Now.Before(until) {
			return Decision{Verdict: Wait, Until: until, Reason: fmt.Sprintf("waiting: wave %s starts %s at %s (%d × soak %s after the commit of %s)",
				r.WaveName(in.Wave), round(until.Sub(in.Now)), until.UTC().Format(time.RFC3339), in.Wave, r.Soak, rev)}
		}
		return Decision{Verdict: Apply}
	}
	obs := in.Observed
	if obs.Err != nil {
		if r.Gate.OnError == OnErrorProceed {
			return Decision{Verdict: Apply, Reason: fmt.Sprintf("gate unreachable: %v (on_error: proceed)", obs.Err)}
		}
		return Decision{Verdict: GateError, Reason: fmt.Sprintf("gate unreachable: %v (on_error: hold)", obs.Err)}
	}
	if rb, ok := earliestRollback(r, in.Wave, obs.RolledBack); ok {
		return Decision{Verdict: Halted, Reason: fmt.Sprintf("held by rollout: %s rolled back on %s (%s)", rev, rb.Host, rb.Wave)}
	}
	for k := in.Wave - 1; k >= 0; k-- {
		name := r.WaveName(k)
		ws := obs.Waves[name]
		if ws.Targeting == 0 {
			continue // an empty wave is done with everything
		}
		need := int(math.Ceil(r.Gate.Healthy*float64(ws.Targeting) - 1e-9))
		since := append([]time.Time(nil), ws.HealthySince...)
		sort.Slice(since, func(i, j int) bool { return since[i].Before(since[j]) })
		if len(since) < need {
			return Decision{Verdict: Wait, Reason: fmt.Sprintf("waiting: wave %s %d/%d healthy on %s, %d needed",
				name, len(since), ws.Targeting, rev, need)}
		}
		// The need-th longest-healthy host sets how long the wave has soaked.
		soaked := in.Now.Sub(since[need-1])
		if soaked < r.Soak {
			return Decision{Verdict: Wait, Reason: fmt.Sprintf("waiting: wave %s %d/%d healthy on %s for %s of %s soak",
				name, len(since), ws.Targeting, rev, round(max(soaked, 0)), r.Soak)}
		}
		return Decision{Verdict: Apply}
	}
	return Decision{Verdict: Apply}
}

// earliestRollback is a rollback of the revision on a host of a wave
// before wave (hosts of the same or a later wave do not halt this one).
// A wave name this rollout does not know (another rollout's, while a
// change of fleet.yaml spreads) counts as earlier: holding is the safe side.
func earliestRollback(r *Rollout, wave int, rbs []HostRef) (HostRef, bool) {
	best, found := HostRef{}, false
	bestIdx := math.MaxInt
	for _, rb := range rbs {
		i := r.WaveIndex(rb.Wave)
		if i >= wave {
			continue
		}
		if !found || i < bestIdx || (i == bestIdx && rb.Host < best.Host) {
			best, bestIdx, found = rb, i, true
		}
	}
	return best, found
}

func short(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}

func round(d time.Duration) time.Duration {
	if d >= time.Minute {
		return d.Round(time.Second)
	}
	return d.Round(100 * time.Millisecond)
}
