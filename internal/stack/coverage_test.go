package stack

import (
	"context"
	"errors"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/gitopsd/gitopsd/internal/policy"
)

// These tests cover what the corpus (corpus_test.go) cannot hold up to
// compose: gitopsd's own keys and refusals, and how stacks are found.

func TestProfilesOptionErrorsNameTheKey(t *testing.T) {
	cases := map[string]struct{ options, want string }{
		"scalar":  {"x-gitopsd:\n  profiles: debug\n", "stacks/p/compose.yaml:5: x-gitopsd.profiles: must be a list of profile names"},
		"mapping": {"x-gitopsd:\n  profiles: {debug: true}\n", "stacks/p/compose.yaml:5: x-gitopsd.profiles: must be a list of profile names"},
		"number":  {"x-gitopsd:\n  profiles:\n    - debug\n    - 7\n", "stacks/p/compose.yaml:7: x-gitopsd.profiles.1: must be a profile name, not 7"},
		"nested":  {"x-gitopsd:\n  profiles: [[debug]]\n", "stacks/p/compose.yaml:5: x-gitopsd.profiles.0: must be a profile name, not [debug]"},
		"typo":    {"x-gitopsd:\n  profile: [debug]\n", `x-gitopsd.profile: unknown key "profile" (known: backup, drift, health, profiles, rollout, targets, update)`},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			dir := repo(t, map[string]string{"stacks/p/compose.yaml": "services:\n  a:\n    image: x\n" + c.options})
			_, err := Load(context.Background(), dir, "p", host)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
		})
	}
}

func TestDiscoverFindsStacksNamedByComposeFile(t *testing.T) {
	dir := repo(t, map[string]string{
		"stacks/named/.env":       "A=1\nexport COMPOSE_FILE=app.yaml\n",
		"stacks/named/app.yaml":   "services:\n  a: {image: x}\n",
		"stacks/typo/.env":        "COMPOSE_FILE=ap.yaml\n",
		"stacks/typo/app.yaml":    "services:\n  a: {image: x}\n",
		"stacks/broken/.env":      "COMPOSE_FILE=app.yaml\nA=\"unterminated\n",
		"stacks/broken/app.yaml":  "services:\n  a: {image: x}\n",
		"stacks/comment/.env":     "# COMPOSE_FILE=app.yaml\n",
		"stacks/comment/app.yaml": "services:\n  a: {image: x}\n",
		"stacks/plain/.env":       "A=1\n",
		"stacks/plain/app.yaml":   "services:\n  a: {image: x}\n",
	})
	names, err := Discover(dir)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"broken", "named", "typo"}; !slices.Equal(names, want) {
		t.Fatalf("Discover found %v, want %v", names, want)
	}
	res := LoadAll(context.Background(), dir, host)
	if len(res.Stacks) != 1 || res.Stacks[0].Name != "named" {
		t.Errorf("valid stacks %v", res.Stacks)
	}
	// A typo keeps the stack, Invalid (its containers stay), rather than
	// losing it (its containers removed).
	if err := res.Invalid["typo"]; err == nil || err.Error() != "stacks/typo/.env:1: COMPOSE_FILE names ap.yaml, which does not exist" {
		t.Errorf("typo: %v", err)
	}
	if err := res.Invalid["broken"]; err == nil || !strings.Contains(err.Error(), "stacks/broken/.env:2: unterminated quoted value") {
		t.Errorf("broken: %v", err)
	}
}

// TestProfilesBehindAMergeKey: the look for x-gitopsd.profiles before
// loading reads the YAML as written and misses a key a merge key brings;
// the loaded project has the last word.
func TestProfilesBehindAMergeKey(t *testing.T) {
	dir := repo(t, map[string]string{"stacks/m/compose.yaml": `x-fleet: &fleet
  profiles: [debug]
services:
  app: {image: x}
  debug: {image: x, profiles: [debug]}
x-gitopsd:
  <<: *fleet
  drift: report
`})
	st, err := Load(context.Background(), dir, "m", host)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Project.ServiceNames(); !slices.Contains(got, "debug") || !slices.Equal(st.Profiles, []string{"debug"}) {
		t.Errorf("services %v, profiles %v: want debug active", got, st.Profiles)
	}
}

func TestComposeFileOutsideTheStackNeedsThePolicy(t *testing.T) {
	dir := repo(t, map[string]string{
		"common/base.yaml":    "services:\n  app: {image: common}\n",
		"stacks/s/.env":       "COMPOSE_FILE=../../common/base.yaml:local.yaml\n",
		"stacks/s/local.yaml": "services:\n  app: {command: [run]}\n",
	})
	_, err := Load(context.Background(), dir, "s", host)
	want := "stacks/s/.env:1: COMPOSE_FILE names ../../common/base.yaml, outside the stack folder (policy.paths_outside_stack)"
	if err == nil || err.Error() != want {
		t.Fatalf("error %v, want %q", err, want)
	}
	open := policy.Default()
	open.PathsOutsideStack = true
	st, err := Load(context.Background(), dir, "s", Host{Name: "h", Policy: &open})
	if err != nil {
		t.Fatal(err)
	}
	// The first file's folder is the project directory, as for compose.
	if st.Project.WorkingDir != filepath.Join(dir, "common") || st.Project.Services["app"].Image != "common" {
		t.Errorf("working dir %s, services %v", st.Project.WorkingDir, st.Project.Services)
	}
}

func TestIncludeEscapesAreRefusedAtEveryLevel(t *testing.T) {
	cases := map[string]struct {
		files map[string]string
		want  string
	}{
		"nested env_file": {map[string]string{
			"stacks/s/compose.yaml":     "include: [lib/compose.yaml]\nservices:\n  a: {image: x}\n",
			"stacks/s/lib/compose.yaml": "include:\n  - path: db.yaml\n    env_file: ../../../secret.env\n",
			"stacks/s/lib/db.yaml":      "services:\n  db: {image: x}\n",
		}, "stacks/s/lib/compose.yaml:3: include.0.env_file: ../../../secret.env is outside the stack folder (policy.paths_outside_stack)"},
		"interpolated env_file": {map[string]string{
			"stacks/s/.env":         "WHERE=/etc\n",
			"stacks/s/compose.yaml": "include:\n  - path: db.yaml\n    env_file: ${WHERE}/environment\nservices:\n  a: {image: x}\n",
			"stacks/s/db.yaml":      "services:\n  db: {image: x}\n",
		}, "stacks/s/compose.yaml:3: include.0.env_file: ${WHERE}/environment is outside the stack folder"},
		"absolute path": {map[string]string{
			"stacks/s/compose.yaml": "include:\n  - /etc/compose.yaml\nservices:\n  a: {image: x}\n",
		}, "stacks/s/compose.yaml:2: include.0.path: /etc/compose.yaml is outside the stack folder"},
		"alias bomb not named .yaml": {map[string]string{
			"stacks/s/compose.yaml": "include: [lib.txt]\nservices:\n  a: {image: x}\n",
			"stacks/s/lib.txt":      aliasBombFile(6),
		}, "stacks/s/lib.txt:"},
	}
	for name, c := range cases {
		t.Run(name, func(t *testing.T) {
			c.files["secret.env"] = "TOKEN=1\n"
			dir := repo(t, c.files)
			_, err := Load(context.Background(), dir, "s", host)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("error %v, want %q", err, c.want)
			}
		})
	}
}

func TestComposeFileLimits(t *testing.T) {
	dir := repo(t, map[string]string{
		"stacks/many/.env":        "COMPOSE_FILE=" + strings.Repeat("a.yaml:", MaxComposeFiles) + "a.yaml\n",
		"stacks/many/a.yaml":      "services:\n  a: {image: x}\n",
		"stacks/bomb/.env":        "COMPOSE_FILE=compose.txt\n",
		"stacks/bomb/compose.txt": aliasBombFile(6),
	})
	_, err := Load(context.Background(), dir, "many", host)
	if err == nil || !strings.Contains(err.Error(), "stacks/many/.env:1: COMPOSE_FILE names 101 files, over the limit of 100") {
		t.Errorf("many: %v", err)
	}
	_, err = Load(context.Background(), dir, "bomb", host)
	var e *Error
	if !errors.As(err, &e) || e.File != "stacks/bomb/compose.txt" || !strings.Contains(e.Msg, "alias bomb") {
		t.Errorf("bomb: %v", err)
	}
}

// aliasBombFile is a compose file whose aliases expand past MaxYAMLNodes.
func aliasBombFile(levels int) string {
	var b strings.Builder
	b.WriteString("x-l0: &l0 [a, a, a, a, a, a, a, a, a, a]\n")
	for i := 1; i <= levels; i++ {
		p := "*l" + string(rune('0'+i-1))
		b.WriteString("x-l" + string(rune('0'+i)) + ": &l" + string(rune('0'+i)) + " [" + strings.Repeat(p+", ", 9) + p + "]\n")
	}
	b.WriteString("services:\n  a: {image: x}\n")
	return b.String()
}

func TestDaemonEnvironmentSelectsNothing(t *testing.T) {
	t.Setenv("COMPOSE_FILE", "other.yaml")
	t.Setenv("COMPOSE_PROFILES", "debug")
	dir := repo(t, map[string]string{
		"stacks/s/compose.yaml": "services:\n  a: {image: x}\n  d: {image: x, profiles: [debug]}\n",
		"stacks/s/other.yaml":   "services:\n  o: {image: x}\n",
	})
	st, err := Load(context.Background(), dir, "s", host)
	if err != nil {
		t.Fatal(err)
	}
	if got := st.Project.ServiceNames(); !slices.Equal(got, []string{"a"}) || st.Profiles != nil {
		t.Errorf("services %v, profiles %v: the daemon's COMPOSE_* chose them", got, st.Profiles)
	}
}
