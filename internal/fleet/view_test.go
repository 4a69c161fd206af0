package fleet

import (
	"bytes"
	"strings"
	"testing"
	"time"
)

func sample(value float64, labels ...string) Sample {
	l := map[string]string{}
	for i := 0; i+1 < len(labels); i += 2 {
		l[labels[i]] = labels[i+1]
	}
	return Sample{Labels: l, Value: value}
}

const (
	revA = "aaaaaaaaaaaa1111111111111111111111111111"
	revB = "bbbbbbbbbbbb2222222222222222222222222222"
)

// statusFixture: edge-01 (canary) runs web on B healthy with a snapshot
// and an open drift; edge-02 (rest) is held from B on A; edge-03 stopped
// answering (up 0); edge-04's target left discovery (no up); edge-05
// reports no stack; a node exporter on edge-01 is not a gitopsd.
func statusFixture(now time.Time) map[string][]Sample {
	t := func(host string) []string { return []string{"job", "gitopsd", "instance", host + ":9469"} }
	with := func(base []string, more ...string) []string { return append(append([]string{}, base...), more...) }
	return map[string][]Sample{
		"hosts": {
			sample(1, with(t("edge-01"), "host", "edge-01")...), sample(1, with(t("edge-02"), "host", "edge-02")...),
			sample(1, with(t("edge-03"), "host", "edge-03")...), sample(1, with(t("edge-04"), "host", "edge-04")...),
			sample(1, with(t("edge-05"), "host", "edge-05")...),
		},
		"up": {
			sample(1, t("edge-01")...), sample(1, t("edge-02")...), sample(0, t("edge-03")...), sample(1, t("edge-05")...),
			sample(1, "job", "node", "instance", "edge-01:9100"),
		},
		"stacks": {
			sample(1, with(t("edge-01"), "stack", "web", "revision", revB, "sync", "Synced", "health", "Healthy")...),
			sample(1, with(t("edge-01"), "stack", "db", "revision", revA, "sync", "Failed", "health", "Healthy")...),
			sample(1, with(t("edge-02"), "stack", "web", "revision", revA, "sync", "Synced", "health", "Healthy")...),
			// a stale series of the down host is not shown as running
			sample(1, with(t("edge-03"), "stack", "web", "revision", revA, "sync", "Synced", "health", "Healthy")...),
			sample(1, "job", "node", "instance", "edge-01:9100", "stack", "x", "revision", revA),
		},
		"drift":    {sample(2, with(t("edge-01"), "stack", "web")...), sample(1, with(t("edge-02"), "stack", "gone")...)},
		"outcome":  {sample(1, with(t("edge-01"), "stack", "web", "outcome", "succeeded")...), sample(1, with(t("edge-01"), "stack", "db", "outcome", "rolled_back")...)},
		"snapshot": {sample(float64(now.Add(-3*time.Hour).Unix()), with(t("edge-01"), "stack", "web")...)},
		"wave": {
			sample(1, with(t("edge-01"), "stack", "web", "wave", "canary", "host", "edge-01")...),
			sample(1, with(t("edge-01"), "stack", "db", "wave", "canary", "host", "edge-01")...),
			sample(1, with(t("edge-02"), "stack", "web", "wave", "rest", "host", "edge-02")...),
		},
		"held": {sample(1, with(t("edge-02"), "stack", "web", "wave", "rest", "host", "edge-02", "revision", revB, "verdict", "wait")...)},
	}
}

// TestBuildStatus: one row per host and stack, joined on the target;
// hosts down or gone are listed as not reporting, with no stale stacks;
// a host with no stack has a row; other jobs are not hosts.
func TestBuildStatus(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	st := BuildStatus(statusFixture(now))
	var got []string
	for _, r := range st.Rows {
		snap := "-"
		if r.LastSnapshot != nil {
			snap = now.Sub(*r.LastSnapshot).String()
		}
		held := "-"
		if r.Held != nil {
			held = r.Held.Revision[:4] + "/" + r.Held.Verdict
		}
		got = append(got, strings.Join([]string{r.Host, r.Stack, r.Wave, shortRev(r.Revision), r.Sync, r.Health,
			string(rune('0' + r.Drift)), r.LastOutcome, snap, held, map[bool]string{true: "up", false: "down"}[r.Reporting]}, "|"))
	}
	want := []string{
		"edge-01|db|canary|aaaa|Failed|Healthy|0|rolled_back|-|-|up",
		"edge-01|web|canary|bbbb|Synced|Healthy|2|succeeded|3h0m0s|-|up",
		"edge-02|web|rest|aaaa|Synced|Healthy|0||-|bbbb/wait|up",
		"edge-03||||||0||-|-|down",
		"edge-04||||||0||-|-|down",
		"edge-05||||||0||-|-|up",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("rows:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	var b bytes.Buffer
	if err := WriteStatus(&b, st, now); err != nil {
		t.Fatal(err)
	}
	text := b.String()
	for _, line := range []string{
		"HOST     STACK  WAVE    REVISION      SYNC    HEALTH   DRIFT  LAST OUTCOME  SNAPSHOT AGE  NOTE",
		"edge-01  web    canary  bbbbbbbbbbbb  Synced  Healthy  2      succeeded     3h",
		"edge-02  web    rest    aaaaaaaaaaaa  Synced  Healthy  0      -             -             held from bbbbbbbbbbbb (wait)",
		"edge-03  -      -       -             -       -        -      -             -             not reporting (edge-03:9469)",
		"edge-05  -      -       -             -       -        -      -             -             no stack",
	} {
		if !strings.Contains(text, line) {
			t.Errorf("table lacks %q:\n%s", line, text)
		}
	}
}

func shortRev(r string) string {
	if len(r) < 4 {
		return r
	}
	return r[:4]
}

// TestBuildRollout: a revision halted after the canary rolled it back,
// then the same fleet with a good revision half through: the revision
// chosen, the waves in the order the revision reached them, and each
// host's place.
func TestBuildRollout(t *testing.T) {
	now := time.Date(2026, 12, 6, 12, 0, 0, 0, time.UTC)
	targeting := []Sample{
		sample(1, "stack", "web", "wave", "rest", "host", "edge-02"), sample(1, "stack", "web", "wave", "rest", "host", "edge-03"),
		sample(1, "stack", "web", "wave", "canary", "host", "edge-01"),
	}
	halted := map[string][]Sample{
		"targeting": targeting,
		"healthy": {
			sample(float64(now.Add(-2*time.Hour).Unix()), "stack", "web", "revision", revA, "wave", "canary", "host", "edge-01"),
			sample(float64(now.Add(-2*time.Hour).Unix()), "stack", "web", "revision", revA, "wave", "rest", "host", "edge-02"),
			sample(float64(now.Add(-2*time.Hour).Unix()), "stack", "web", "revision", revA, "wave", "rest", "host", "edge-03"),
		},
		"rolledback": {sample(1, "stack", "web", "revision", revB, "wave", "canary", "host", "edge-01")},
		"held": {
			sample(1, "stack", "web", "revision", revB, "wave", "rest", "host", "edge-02", "verdict", "halted"),
			sample(1, "stack", "web", "revision", revB, "wave", "rest", "host", "edge-03", "verdict", "halted"),
		},
	}
	v := BuildRollout("web", "", halted)
	if v.Revision != revB || len(v.Waves) != 2 || v.Waves[0].Wave != "canary" || v.Waves[1].Wave != "rest" {
		t.Fatalf("halted: %+v", v)
	}
	if c := v.Waves[0]; len(c.RolledBack) != 1 || c.RolledBack[0] != "edge-01" || len(c.Healthy) != 0 || len(c.Other) != 0 {
		t.Errorf("canary: %+v", c)
	}
	if r := v.Waves[1]; len(r.Held) != 2 || r.Held[0] != (HostHeld{"edge-02", "halted"}) || len(r.Other) != 0 || len(r.Hosts) != 2 {
		t.Errorf("rest: %+v", r)
	}
	// The same fleet asked about A: everyone healthy on it.
	if v := BuildRollout("web", revA[:12], halted); v.Revision != revA || len(v.Waves[0].Healthy)+len(v.Waves[1].Healthy) != 3 {
		t.Errorf("revision A: %+v", v)
	}

	half := map[string][]Sample{
		"targeting": targeting,
		"healthy": {
			sample(float64(now.Add(-10*time.Minute).Unix()), "stack", "web", "revision", revB, "wave", "canary", "host", "edge-01"),
			sample(float64(now.Add(-1*time.Minute).Unix()), "stack", "web", "revision", revB, "wave", "rest", "host", "edge-03"),
			sample(float64(now.Add(-2*time.Hour).Unix()), "stack", "web", "revision", revA, "wave", "rest", "host", "edge-02"),
		},
	}
	v = BuildRollout("web", "", half)
	if v.Revision != revB || v.Waves[0].Wave != "canary" || len(v.Waves[1].Healthy) != 1 || len(v.Waves[1].Other) != 1 || v.Waves[1].Other[0] != "edge-02" {
		t.Fatalf("half through: %+v", v)
	}
	var b bytes.Buffer
	if err := WriteRollout(&b, v, now); err != nil {
		t.Fatal(err)
	}
	want := "stack web, revision bbbbbbbbbbbb\n" +
		"WAVE    HOSTS  HEALTHY ON IT     HELD  ROLLED BACK  OTHER\n" +
		"canary  1      1: edge-01 (10m)  -     -            -\n" +
		"rest    2      1: edge-03 (1m)   -     -            1: edge-02\n"
	if b.String() != want {
		t.Errorf("rollout table:\n%s\nwant:\n%s", b.String(), want)
	}
}
