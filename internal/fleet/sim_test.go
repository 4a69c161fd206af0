package fleet

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// simHost is one simulated host's state for one stack and revision.
type simHost struct {
	name                               string
	wave                               int
	offset                             time.Duration // when in each poll period it polls
	appliedAt, healthyAt, rolledBackAt time.Time
	lastDecision                       Decision
}

// simulation is a fleet of hosts polling one repository with a fake
// clock. The gate's observations are derived from the hosts' own state as
// Prometheus would show it: what a host exported at least scrapeLag ago.
type simulation struct {
	rollout   *Rollout
	hosts     []*simHost
	poll      time.Duration
	settle    time.Duration // from apply to healthy (good) or rolled back (bad)
	scrapeLag time.Duration
	bad       bool
	commit    time.Time
}

func newSimulation(n int, r *Rollout, bad bool) *simulation {
	s := &simulation{rollout: r, poll: time.Minute, settle: 30 * time.Second, scrapeLag: 15 * time.Second, bad: bad,
		commit: time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)}
	for i := range n {
		h := Host{Name: fmt.Sprintf("shop-%04d", i), Labels: map[string]string{}}
		if i%100 == 0 {
			h.Labels["ring"] = "canary"
		}
		s.hosts = append(s.hosts, &simHost{name: h.Name, wave: WaveOf(h, r.Waves), offset: time.Duration(i) * s.poll / time.Duration(n)})
	}
	return s
}

func (s *simulation) observe(now time.Time) Observation {
	seen := now.Add(-s.scrapeLag)
	obs := Observation{Waves: map[string]WaveState{}}
	for _, h := range s.hosts {
		name := s.rollout.WaveName(h.wave)
		ws := obs.Waves[name]
		ws.Targeting++
		if !h.healthyAt.IsZero() && !h.healthyAt.After(seen) {
			ws.HealthySince = append(ws.HealthySince, h.healthyAt)
		}
		obs.Waves[name] = ws
		if !h.rolledBackAt.IsZero() && !h.rolledBackAt.After(seen) {
			obs.RolledBack = append(obs.RolledBack, HostRef{h.name, name})
		}
	}
	return obs
}

// run advances the clock a second at a time until every host applied or
// the limit passed, and returns when the last host applied.
func (s *simulation) run(limit time.Duration) (last time.Time) {
	for now := s.commit; now.Before(s.commit.Add(limit)); now = now.Add(time.Second) {
		var obs *Observation
		done := true
		for _, h := range s.hosts {
			if h.appliedAt.IsZero() {
				done = false
			} else if h.healthyAt.IsZero() && h.rolledBackAt.IsZero() && !now.Before(h.appliedAt.Add(s.settle)) {
				if s.bad {
					h.rolledBackAt = now
				} else {
					h.healthyAt = now
				}
			}
			if !h.appliedAt.IsZero() || now.Sub(s.commit)%s.poll != h.offset.Truncate(time.Second) {
				continue
			}
			if obs == nil && s.rollout.Gate != nil {
				o := s.observe(now)
				obs = &o
			}
			in := Input{Rollout: s.rollout, Wave: h.wave, Revision: "badc0ffee", CommitTime: s.commit, Now: now}
			if obs != nil {
				in.Observed = *obs
			}
			h.lastDecision = Decide(in)
			if !h.lastDecision.Held() {
				h.appliedAt = now
				last = now
			}
		}
		if done {
			break
		}
	}
	return last
}

func threeWaves(gate *Gate) *Rollout {
	return &Rollout{Waves: []Wave{
		{Name: "canary", Kind: SelectLabels, Labels: map[string]string{"ring": "canary"}},
		{Name: "early", Kind: SelectPercent, Percent: 10},
		{Name: "rest", Kind: SelectAll},
	}, Soak: 15 * time.Minute, Gate: gate}
}

// TestSimulatedFleetGoodRevision: 1,000 hosts polling every minute, three
// waves, a 15m soak gated on the fleet's health: a good revision reaches
// every host within waves × (soak + poll interval).
func TestSimulatedFleetGoodRevision(t *testing.T) {
	for _, gate := range []*Gate{{PrometheusURL: "http://p", Healthy: 1, OnError: OnErrorHold}, nil} {
		s := newSimulation(1000, threeWaves(gate), false)
		bound := time.Duration(len(s.rollout.Waves)) * (s.rollout.Soak + s.poll)
		last := s.run(4 * time.Hour)
		perWave := map[int]int{}
		var firstOf, lastOf [3]time.Duration
		for _, h := range s.hosts {
			if h.appliedAt.IsZero() {
				t.Fatalf("gate %v: %s (wave %d) never applied: %s", gate != nil, h.name, h.wave, h.lastDecision.Reason)
			}
			d := h.appliedAt.Sub(s.commit)
			if perWave[h.wave] == 0 || d < firstOf[h.wave] {
				firstOf[h.wave] = d
			}
			lastOf[h.wave] = max(lastOf[h.wave], d)
			perWave[h.wave]++
		}
		t.Logf("gate %v: waves canary %d hosts (applied %s..%s), early %d (%s..%s), rest %d (%s..%s); all within %s (bound %s)",
			gate != nil, perWave[0], firstOf[0], lastOf[0], perWave[1], firstOf[1], lastOf[1], perWave[2], firstOf[2], lastOf[2], last.Sub(s.commit), bound)
		if got := last.Sub(s.commit); got > bound {
			t.Errorf("gate %v: the last host applied after %s, bound %s", gate != nil, got, bound)
		}
		// Waves went in order: with a gate, no host of a wave before the
		// previous one soaked; without, not before k × soak after the commit.
		for k := 1; k < 3; k++ {
			if gate == nil && firstOf[k] < time.Duration(k)*s.rollout.Soak {
				t.Errorf("no gate: wave %d started at %s, before %d × soak", k, firstOf[k], k)
			}
			if gate != nil && firstOf[k] < lastOf[k-1]+s.rollout.Soak {
				t.Errorf("gate %v: wave %d started at %s, before wave %d (last at %s) soaked %s", gate != nil, k, firstOf[k], k-1, lastOf[k-1], s.rollout.Soak)
			}
		}
	}
}

// TestSimulatedFleetBadRevision: a revision that fails on every host that
// applies it is rolled back on the canaries and reaches no other host;
// every later host says why it holds.
func TestSimulatedFleetBadRevision(t *testing.T) {
	s := newSimulation(1000, threeWaves(&Gate{PrometheusURL: "http://p", Healthy: 1, OnError: OnErrorHold}), true)
	s.run(4 * time.Hour)
	applied, canaries := 0, 0
	for _, h := range s.hosts {
		if h.wave == 0 {
			canaries++
		}
		if h.appliedAt.IsZero() {
			if h.wave == 0 {
				t.Errorf("canary %s never applied", h.name)
			}
			if h.lastDecision.Verdict != Halted || !strings.Contains(h.lastDecision.Reason, "held by rollout: badc0ffee rolled back on shop-") {
				t.Errorf("%s (wave %d) holds with %s %q, want halted by the rollback", h.name, h.wave, h.lastDecision.Verdict, h.lastDecision.Reason)
			}
			continue
		}
		applied++
		if h.wave != 0 {
			t.Errorf("%s of wave %s applied the bad revision", h.name, s.rollout.WaveName(h.wave))
		}
	}
	t.Logf("bad revision: applied on %d hosts (the canary wave has %d) of %d", applied, canaries, len(s.hosts))
}
