package main

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestValidateChecksRollouts: validate loads fleet.yaml and every stack's
// x-gitopsd.rollout, and says what is wrong with each, naming the file,
// line and key; a good fleet.yaml is summed up; an invalid one fails the
// run even when every stack is fine.
func TestValidateChecksRollouts(t *testing.T) {
	app := "services:\n  app:\n    image: example/app:1\n"
	repo := t.TempDir()
	writeFiles(t, repo, map[string]string{
		"fleet.yaml":                "rollout:\n  waves:\n    - {name: canary, hosts: {labels: {ring: canary}}}\n    - {name: rest}\n  soak: 15m\n",
		"stacks/plain/compose.yaml": app,
		"stacks/own/compose.yaml":   app + "x-gitopsd:\n  rollout:\n    waves: [{name: first, percent: 5}, {name: rest}]\n    soak: 1m\n",
		"stacks/bad/compose.yaml":   app + "x-gitopsd:\n  rollout:\n    waves:\n      - {name: first, percent: 5}\n      - {name: rest}\n    soak: soon\n",
		"stacks/twice/compose.yaml": app + "x-gitopsd:\n  rollout:\n    waves:\n      - name: first\n        percent: 5\n        hosts: {names: [edge-*]}\n",
	})
	out, errOut, code := gitopsd(t, nil, "validate", repo, "--host", "edge-01")
	if code != 1 {
		t.Fatalf("exit %d, want 1\n%s%s", code, out, errOut)
	}
	for _, want := range []string{
		"ok       fleet.yaml (waves canary, rest, soak 15m0s)",
		"ok       plain (1 services)",
		"ok       own (1 services)",
		`invalid  bad: stacks/bad/compose.yaml:9: x-gitopsd.rollout.soak: "soon" is not a duration`,
		"invalid  twice: stacks/twice/compose.yaml:8: x-gitopsd.rollout.waves.0.percent: a wave has one selector: hosts or percent, not both",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("validate output lacks %q:\n%s", want, out)
		}
	}

	// A fleet.yaml that does not load fails validate by itself.
	writeFiles(t, repo, map[string]string{
		"fleet.yaml":                "rollout:\n  waves:\n    - {name: canary, percent: 10}\n    - {name: canary}\n",
		"stacks/bad/compose.yaml":   app,
		"stacks/twice/compose.yaml": app,
	})
	out, errOut, code = gitopsd(t, nil, "validate", repo, "--host", "edge-01")
	if code != 1 || !strings.Contains(out, `invalid  fleet.yaml: fleet.yaml:4: rollout.waves.1.name: duplicate wave name "canary" (first at line 3)`) {
		t.Errorf("exit %d, want 1 naming fleet.yaml:4\n%s%s", code, out, errOut)
	}
	out, _, code = gitopsd(t, nil, "validate", repo, "--host", "edge-01", "--json")
	var res ValidateResult
	if err := json.Unmarshal([]byte(out), &res); err != nil {
		t.Fatalf("--json: %v\n%s", err, out)
	}
	if code != 1 || res.OK || res.Fleet.Status != "invalid" || !strings.HasPrefix(res.Fleet.Error, "fleet.yaml:4: ") {
		t.Errorf("--json: exit %d, %+v", code, res)
	}
}
