package fleet

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestParseFleetFile(t *testing.T) {
	r, err := Parse("fleet.yaml", []byte(`rollout:
  waves:
    - {name: canary, hosts: {labels: {ring: canary}}}
    - {name: edge, hosts: {names: ["edge-0*"]}}
    - {name: early, percent: 10}
    - {name: half, percent: "50%"}
    - {name: rest}
  soak: 15m
  gate:
    prometheus: {url: "http://prometheus:9090/"}
    healthy: 90%
    on_error: proceed
`))
	if err != nil {
		t.Fatal(err)
	}
	want := []Wave{
		{Name: "canary", Kind: SelectLabels, Labels: map[string]string{"ring": "canary"}},
		{Name: "edge", Kind: SelectNames, Names: []string{"edge-0*"}},
		{Name: "early", Kind: SelectPercent, Percent: 10},
		{Name: "half", Kind: SelectPercent, Percent: 50},
		{Name: "rest", Kind: SelectAll},
	}
	if len(r.Waves) != len(want) {
		t.Fatalf("waves %+v", r.Waves)
	}
	for i, w := range want {
		got := r.Waves[i]
		if got.Name != w.Name || got.Kind != w.Kind || got.Percent != w.Percent || strings.Join(got.Names, ",") != strings.Join(w.Names, ",") || got.Labels["ring"] != w.Labels["ring"] {
			t.Errorf("wave %d = %+v, want %+v", i, got, w)
		}
	}
	if r.Soak != 15*time.Minute || r.Gate == nil || r.Gate.PrometheusURL != "http://prometheus:9090" || r.Gate.Healthy != 0.9 || r.Gate.OnError != OnErrorProceed {
		t.Errorf("rollout = %+v, gate %+v", r, r.Gate)
	}
}

func TestGateDefaults(t *testing.T) {
	r, err := Parse("fleet.yaml", []byte("rollout:\n  waves: [{name: a, percent: 1}, {name: b}]\n  gate: {prometheus: {url: 'https://p'}}\n"))
	if err != nil {
		t.Fatal(err)
	}
	if r.Gate.Healthy != 1 || r.Gate.OnError != OnErrorHold || r.Soak != 0 {
		t.Errorf("defaults: gate %+v soak %s, want healthy 100%%, on_error hold, soak 0", r.Gate, r.Soak)
	}
}

// TestFleetFileErrors: every way a fleet file can be wrong is an error that
// names the file, the line and the key.
func TestFleetFileErrors(t *testing.T) {
	const head = "rollout:\n  waves:\n"
	for name, tc := range map[string]struct{ text, want string }{
		"unknown top key":   {"rolout: {}\n", `fleet.yaml:1: rolout: unknown key (known: rollout)`},
		"unknown key":       {head + "    - {name: a}\n  soaks: 1m\n", `fleet.yaml:4: rollout.soaks: unknown key (known: gate, soak, waves)`},
		"unknown wave key":  {head + "    - {name: a, pct: 3}\n", `fleet.yaml:3: rollout.waves.0.pct: unknown key (known: hosts, name, percent)`},
		"bad duration":      {head + "    - {name: a}\n  soak: 15 minutes\n", `fleet.yaml:4: rollout.soak: "15 minutes" is not a duration`},
		"negative duration": {head + "    - {name: a}\n  soak: -1m\n", `fleet.yaml:4: rollout.soak: "-1m" is not a duration`},
		"bad percent":       {head + "    - {name: a, percent: 110}\n    - {name: b}\n", `fleet.yaml:3: rollout.waves.0.percent: "110" must be a percent in (0, 100]`},
		"zero percent":      {head + "    - {name: a, percent: 0}\n", `fleet.yaml:3: rollout.waves.0.percent: "0" must be a percent`},
		"word percent":      {head + "    - {name: a, percent: ten}\n", `fleet.yaml:3: rollout.waves.0.percent: "ten" must be a percent`},
		"two selectors":     {head + "    - name: a\n      percent: 5\n      hosts: {names: [x]}\n", `fleet.yaml:5: rollout.waves.0.hosts: a wave has one selector: hosts or percent, not both`},
		"labels and names":  {head + "    - name: a\n      hosts:\n        labels: {r: c}\n        names: [x]\n", `fleet.yaml:6: rollout.waves.0.hosts.names: a wave has one selector: labels or names, not both`},
		"duplicate name":    {head + "    - {name: a, percent: 5}\n    - {name: a}\n", `fleet.yaml:4: rollout.waves.1.name: duplicate wave name "a" (first at line 3)`},
		"after catch-all":   {head + "    - {name: a}\n    - {name: b, percent: 10}\n", `fleet.yaml:4: rollout.waves.1: comes after the catch-all wave "a"`},
		"percent shrinks":   {head + "    - {name: a, percent: 20}\n    - {name: b, percent: 10}\n", `fleet.yaml:4: rollout.waves.1.percent: 10 is not above the previous percent wave's 20`},
		"no name":           {head + "    - {percent: 5}\n", `fleet.yaml:3: rollout.waves.0.name: required`},
		"bad name":          {head + "    - {name: 'a b'}\n", `fleet.yaml:3: rollout.waves.0.name: "a b" must be a wave name`},
		"no waves":          {"rollout:\n  soak: 1m\n", `fleet.yaml:2: rollout.waves: required`},
		"empty waves":       {"rollout:\n  waves: []\n", `fleet.yaml:2: rollout.waves: must be a non-empty list of waves`},
		"bad glob":          {head + "    - {name: a, hosts: {names: ['[']}}\n", `fleet.yaml:3: rollout.waves.0.hosts.names.0: "[" is not a host name glob`},
		"empty hosts":       {head + "    - {name: a, hosts: {}}\n", `fleet.yaml:3: rollout.waves.0.hosts: must select by labels or names`},
		"bad on_error":      {head + "    - {name: a, percent: 5}\n    - {name: b}\n  gate:\n    prometheus: {url: 'http://p'}\n    on_error: retry\n", `fleet.yaml:7: rollout.gate.on_error: "retry" must be hold or proceed`},
		"bad url":           {head + "    - {name: a, percent: 5}\n    - {name: b}\n  gate:\n    prometheus: {url: 'prometheus:9090'}\n", `fleet.yaml:6: rollout.gate.prometheus.url: "prometheus:9090" is not an http(s) URL`},
		"gate without url":  {head + "    - {name: a, percent: 5}\n    - {name: b}\n  gate: {healthy: 50}\n", `fleet.yaml:5: rollout.gate.prometheus.url: required`},
		"bad healthy":       {head + "    - {name: a, percent: 5}\n    - {name: b}\n  gate:\n    prometheus: {url: 'http://p'}\n    healthy: all\n", `fleet.yaml:7: rollout.gate.healthy: "all" must be a percent`},
		"duplicate key":     {head + "    - {name: a}\n  soak: 1m\n  soak: 2m\n", `fleet.yaml:5: rollout.soak: duplicate key (first at line 4)`},
		"not yaml":          {"rollout: [\n", `fleet.yaml: invalid YAML`},
		"two documents":     {"rollout: {waves: [{name: a}]}\n---\nx: 1\n", `fleet.yaml:2: more than one YAML document`},
		"scalar":            {"3\n", `fleet.yaml:1: must be a mapping with a rollout: key`},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Parse("fleet.yaml", []byte(tc.text))
			if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
				t.Errorf("error = %v\nwant   %s...", err, tc.want)
			}
		})
	}
}

func TestLoadWithoutFleetFile(t *testing.T) {
	dir := t.TempDir()
	r, err := Load(dir)
	if r != nil || err != nil {
		t.Fatalf("Load without fleet.yaml = %v, %v; want no rollout", r, err)
	}
	if err := os.WriteFile(filepath.Join(dir, FileName), []byte("rollout:\n  waves: [{name: a, percent: 200}]\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(dir); err == nil || !strings.Contains(err.Error(), "fleet.yaml:2: rollout.waves.0.percent") {
		t.Errorf("Load = %v, want the bad percent at fleet.yaml:2", err)
	}
}
