package stack

import (
	"context"
	"encoding/json"
	"maps"
	"path/filepath"
	"slices"
	"testing"
)

// schemaCases are stacks at the edges of what the fast path vouches for:
// files the schema refuses in ways compose-go's transforms, merges or
// normalization could hide, and valid files in shapes it must not turn
// away.
var schemaCases = map[string]map[string]string{
	"valid":             {"compose.yaml": "services:\n  web:\n    image: x\n    ports: [\"80\"]\n    environment: [A=1]\n    healthcheck: {test: [CMD, /app], interval: 2s}\n"},
	"version":           {"compose.yaml": "version: \"3.8\"\nservices:\n  web:\n    image: x\n"},
	"version number":    {"compose.yaml": "version: 3\nservices:\n  web:\n    image: x\n"},
	"unknown key":       {"compose.yaml": "services:\n  web:\n    image: x\n    bogus: 1\n"},
	"env list of ints":  {"compose.yaml": "services:\n  web:\n    image: x\n    environment: [1, 2]\n"},
	"labels int":        {"compose.yaml": "services:\n  web:\n    image: x\n    labels: 5\n"},
	"ports mapping":     {"compose.yaml": "services:\n  web:\n    image: x\n    ports: {a: b}\n"},
	"depends_on int":    {"compose.yaml": "services:\n  web:\n    image: x\n    depends_on: 5\n"},
	"empty services":    {"compose.yaml": "services: {}\n"},
	"null service":      {"compose.yaml": "services:\n  web:\n"},
	"bad duration fmt":  {"compose.yaml": "services:\n  web:\n    image: x\n    stop_grace_period: soon\n"},
	"interpolated type": {"compose.yaml": "services:\n  web:\n    image: x\n    cpu_count: ${N}\n", ".env": "N=2\n"},
	"interpolated bad":  {"compose.yaml": "services:\n  web:\n    image: x\n    cpu_count: ${N}\n", ".env": "N=two\n"},
	"secret both":       {"compose.yaml": "services:\n  web:\n    image: x\nsecrets:\n  s: {file: ./s, environment: S}\n", "s": "x"},
	"overlay repairs":   {"compose.yaml": "services:\n  web:\n    image: x\n    mem_limit: true\n", "compose.edge-1.yaml": "services:\n  web:\n    mem_limit: 1g\n"},
	"overlay breaks":    {"compose.yaml": "services:\n  web:\n    image: x\n", "compose.edge-1.yaml": "services:\n  web:\n    restart: sometimes\n"},
	"overlay reset":     {"compose.yaml": "services:\n  web:\n    image: x\n    ports: [\"80\"]\n", "compose.edge-1.yaml": "services:\n  web:\n    ports: !reset []\n"},
	"extends bad":       {"compose.yaml": "services:\n  web:\n    extends: {file: base.yaml, service: b}\n", "base.yaml": "services:\n  b:\n    image: x\n    bogus: 1\n"},
	"extends good":      {"compose.yaml": "services:\n  web:\n    extends: {service: b}\n  b:\n    image: x\n"},
	"include bad":       {"compose.yaml": "include: [inc.yaml]\nservices:\n  web:\n    image: x\n", "inc.yaml": "services:\n  db:\n    image: y\n    bogus: 1\n"},
	"two documents":     {"compose.yaml": "services:\n  web:\n    image: x\n---\nservices:\n  web:\n    restart: never-ever\n"},
	"anchor merge":      {"compose.yaml": "x-base: &base {image: x, restart: always}\nservices:\n  web:\n    <<: *base\n    ports: [\"80\"]\n"},
	"int key":           {"compose.yaml": "services:\n  web:\n    image: x\n    labels: {1: a}\n"},
	"profiles":          {"compose.yaml": "services:\n  web:\n    image: x\n  dbg:\n    image: y\n    profiles: [debug]\nx-gitopsd: {profiles: [debug]}\n"},
	"x-gitopsd bad":     {"compose.yaml": "services:\n  web:\n    image: x\nx-gitopsd: {drift: sometimes}\n"},
}

// TestFastValidationAgreesWithCompose holds the once-compiled schema to
// compose-go's own validation: every stack of the corpus and of
// schemaCases loads to the same project, or fails with the same error,
// either way; and the valid ones did not need compose-go's validation.
func TestFastValidationAgreesWithCompose(t *testing.T) {
	type input struct {
		repoDir, name string
		host          Host
	}
	var inputs []input
	for name, c := range readCorpus(t) {
		repoDir, err := filepath.Abs(filepath.Join(corpusDir, name))
		if err != nil {
			t.Fatal(err)
		}
		for stackName := range c.Stacks {
			inputs = append(inputs, input{repoDir, stackName, c.host()})
		}
	}
	for i, name := range slices.Sorted(maps.Keys(schemaCases)) {
		files := map[string]string{}
		for f, content := range schemaCases[name] {
			files["stacks/s/"+f] = content
		}
		t.Logf("case %d: %s", i, name)
		inputs = append(inputs, input{repo(t, files), "s", host})
	}
	ctx := context.Background()
	valid, before := 0, fastModels.Load()
	for _, in := range inputs {
		label := filepath.Base(in.repoDir) + "/" + in.name
		fast, fastErr := loadStack(ctx, in.repoDir, in.name, in.host, true, false)
		slow, slowErr := loadStack(ctx, in.repoDir, in.name, in.host, true, true)
		switch {
		case fastErr != nil || slowErr != nil:
			if fastErr == nil || slowErr == nil || fastErr.Error() != slowErr.Error() {
				t.Errorf("%s: fast path says %v, compose-go %v", label, fastErr, slowErr)
			}
		default:
			valid++
			a, _ := json.Marshal(fast.Project)
			b, _ := json.Marshal(slow.Project)
			if string(a) != string(b) {
				t.Errorf("%s: the fast path loads\n%s\ncompose-go\n%s", label, a, b)
			}
		}
	}
	t.Logf("%d of %d stacks valid; the fast path vouched for %d models", valid, len(inputs), fastModels.Load()-before)
	if valid < 20 {
		t.Fatalf("only %d of %d stacks loaded: the comparison proves little", valid, len(inputs))
	}
	// Each stack without include or extends must have been vouched for.
	if fast := fastModels.Load() - before; fast < int64(valid)-5 {
		t.Errorf("the fast path vouched for %d models of %d valid stacks: compose-go still validates them", fast, valid)
	}
}
