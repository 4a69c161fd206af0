package fleet

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestDecide(t *testing.T) {
	t0 := time.Date(2026, 12, 1, 12, 0, 0, 0, time.UTC)
	waves := []Wave{{Name: "canary", Kind: SelectLabels, Labels: map[string]string{"ring": "canary"}}, {Name: "early", Kind: SelectPercent, Percent: 10}, {Name: "rest", Kind: SelectAll}}
	gated := &Rollout{Waves: waves, Soak: 15 * time.Minute, Gate: &Gate{PrometheusURL: "http://p", Healthy: 1, OnError: OnErrorHold}}
	proceed := &Rollout{Waves: waves, Soak: 15 * time.Minute, Gate: &Gate{PrometheusURL: "http://p", Healthy: 1, OnError: OnErrorProceed}}
	half := &Rollout{Waves: waves, Soak: 15 * time.Minute, Gate: &Gate{PrometheusURL: "http://p", Healthy: 0.5, OnError: OnErrorHold}}
	stagger := &Rollout{Waves: waves, Soak: 15 * time.Minute}
	rev := "0123456789abcdef0123"
	healthyFor := func(ds ...time.Duration) []time.Time {
		var out []time.Time
		for _, d := range ds {
			out = append(out, t0.Add(-d))
		}
		return out
	}
	for name, tc := range map[string]struct {
		in      Input
		verdict Verdict
		reason  string
	}{
		"no rollout":    {Input{Wave: 2}, Apply, ""},
		"first wave":    {Input{Rollout: gated, Wave: 0, Observed: Observation{Err: errors.New("down")}}, Apply, ""},
		"skip wave":     {Input{Rollout: gated, Wave: 2, SkipWave: true}, Apply, "wave skipped by the operator"},
		"stagger waits": {Input{Rollout: stagger, Wave: 2, CommitTime: t0.Add(-20 * time.Minute)}, Wait, "waiting: wave rest starts 10m0s at 2026-12-01T12:10:00Z (2 × soak 15m0s after the commit of 0123456789ab)"},
		"stagger done":  {Input{Rollout: stagger, Wave: 2, CommitTime: t0.Add(-30 * time.Minute)}, Apply, ""},
		"soaking": {Input{Rollout: gated, Wave: 1, Observed: Observation{Waves: map[string]WaveState{"canary": {Targeting: 1, HealthySince: healthyFor(3 * time.Minute)}}}},
			Wait, "waiting: wave canary 1/1 healthy on 0123456789ab for 3m0s of 15m0s soak"},
		"soaked": {Input{Rollout: gated, Wave: 1, Observed: Observation{Waves: map[string]WaveState{"canary": {Targeting: 1, HealthySince: healthyFor(15 * time.Minute)}}}}, Apply, ""},
		"not all healthy": {Input{Rollout: gated, Wave: 2, Observed: Observation{Waves: map[string]WaveState{"early": {Targeting: 3, HealthySince: healthyFor(time.Hour, time.Hour)}}}},
			Wait, "waiting: wave early 2/3 healthy on 0123456789ab, 3 needed"},
		"half is enough, the 2nd longest soaked": {Input{Rollout: half, Wave: 2, Observed: Observation{Waves: map[string]WaveState{"early": {Targeting: 4, HealthySince: healthyFor(time.Hour, 16*time.Minute, time.Minute)}}}}, Apply, ""},
		"half, 2nd not soaked": {Input{Rollout: half, Wave: 2, Observed: Observation{Waves: map[string]WaveState{"early": {Targeting: 4, HealthySince: healthyFor(time.Hour, 5*time.Minute)}}}},
			Wait, "waiting: wave early 2/4 healthy on 0123456789ab for 5m0s of 15m0s soak"},
		"empty previous wave: the one before": {Input{Rollout: gated, Wave: 2, Observed: Observation{Waves: map[string]WaveState{"canary": {Targeting: 1}}}},
			Wait, "waiting: wave canary 0/1 healthy on 0123456789ab, 1 needed"},
		"no earlier host targets the stack": {Input{Rollout: gated, Wave: 2, Observed: Observation{Waves: map[string]WaveState{}}}, Apply, ""},
		"rollback halts": {Input{Rollout: gated, Wave: 2, Observed: Observation{Waves: map[string]WaveState{"early": {Targeting: 1, HealthySince: healthyFor(time.Hour)}}, RolledBack: []HostRef{{"edge-09", "early"}, {"edge-03", "canary"}}}},
			Halted, "held by rollout: 0123456789ab rolled back on edge-03 (canary)"},
		"rollback in the same wave does not halt": {Input{Rollout: gated, Wave: 1, Observed: Observation{Waves: map[string]WaveState{"canary": {Targeting: 1, HealthySince: healthyFor(time.Hour)}}, RolledBack: []HostRef{{"edge-09", "early"}}}}, Apply, ""},
		"rollback in an unknown wave halts": {Input{Rollout: gated, Wave: 1, Observed: Observation{RolledBack: []HostRef{{"edge-09", "old"}}}},
			Halted, "held by rollout: 0123456789ab rolled back on edge-09 (old)"},
		"gate unreachable, hold":    {Input{Rollout: gated, Wave: 1, Observed: Observation{Err: errors.New("connection refused")}}, GateError, "gate unreachable: connection refused (on_error: hold)"},
		"gate unreachable, proceed": {Input{Rollout: proceed, Wave: 1, Observed: Observation{Err: errors.New("connection refused")}}, Apply, "gate unreachable: connection refused (on_error: proceed)"},
	} {
		t.Run(name, func(t *testing.T) {
			tc.in.Revision = rev
			tc.in.Now = t0
			d := Decide(tc.in)
			if d.Verdict != tc.verdict || d.Reason != tc.reason {
				t.Errorf("Decide = %s %q\nwant       %s %q", d.Verdict, d.Reason, tc.verdict, tc.reason)
			}
			if d.Held() != (tc.verdict != Apply) {
				t.Errorf("Held() = %v for %s", d.Held(), d.Verdict)
			}
		})
	}
}

func TestQueriesQuoteTheirLabels(t *testing.T) {
	q := QueriesFor(`we"b`, "abc")
	if !strings.Contains(q.Targeting, `stack="we\"b"`) || !strings.Contains(q.HealthySince, `revision="abc"`) {
		t.Errorf("queries %+v", q)
	}
}
