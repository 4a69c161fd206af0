package stack

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/gitopsd/gitopsd/internal/policy"
)

// What the classic builder cannot build makes the stack Invalid, naming
// the key and its line, on every host (so validate says it offline).
func TestBuildsGitopsdCannotBuildAreInvalid(t *testing.T) {
	open := policy.Default()
	open.PathsOutsideStack = true
	for _, tc := range []struct {
		name, build, key, why string
		line                  int
	}{
		{"buildkit secret", "context: .\n      secrets: [npm]", "services.web.build.secrets", "needs BuildKit", 6},
		{"ssh", "context: .\n      ssh: [default]", "services.web.build.ssh", "needs BuildKit", 6},
		{"remote context", "context: https://github.com/acme/web.git", "services.web.build.context", "only a folder of the repository", 5},
		{"context outside the repository", "context: ../../..", "services.web.build.context", "is outside the repository", 5},
		{"dockerfile outside the repository", "context: .\n      dockerfile: ../../../Dockerfile", "services.web.build.dockerfile", "is outside the repository", 6},
	} {
		t.Run(tc.name, func(t *testing.T) {
			compose := "services:\n  web:\n    image: x\n    build:\n      " + tc.build + "\n"
			if strings.Contains(tc.build, "secrets:") {
				compose += "secrets:\n  npm: {file: ./npm.txt}\n"
			}
			dir := repo(t, map[string]string{"stacks/app/compose.yaml": compose, "stacks/app/npm.txt": "t\n", "stacks/app/Dockerfile": "FROM scratch\n"})
			_, err := Load(context.Background(), dir, "app", Host{Name: host.Name, Policy: &open})
			var e *Error
			if !errors.As(err, &e) || !strings.Contains(e.Msg, tc.key+": ") || !strings.Contains(e.Msg, tc.why) || e.Line != tc.line {
				t.Fatalf("got %v (line %d), want %s at line %d: ...%s", err, lineOf(e), tc.key, tc.line, tc.why)
			}
		})
	}
	// A Dockerfile elsewhere in the repository is fine: it is sent inline.
	dir := repo(t, map[string]string{
		"stacks/app/compose.yaml":   "services:\n  web:\n    build:\n      context: ./src\n      dockerfile: ../Dockerfile.web\n",
		"stacks/app/src/main.go":    "package main\n",
		"stacks/app/Dockerfile.web": "FROM scratch\n",
	})
	if _, err := Load(context.Background(), dir, "app", host); err != nil {
		t.Fatalf("a Dockerfile beside the context: %v", err)
	}
}

func lineOf(e *Error) int {
	if e == nil {
		return 0
	}
	return e.Line
}

// A pull_policy the compose schema accepts but gitopsd cannot honour makes
// the stack Invalid at load, naming the key and line; every policy gitopsd
// honours loads.
func TestPullPolicyGitopsdCannotHonourIsInvalid(t *testing.T) {
	for _, tc := range []struct {
		policy, why string // why "" means it loads
	}{
		{"refresh", "want always, missing"},
		{"always_when_idle", "pull_policy \"always_when_idle\""},
		{"always", ""}, {"missing", ""}, {"if_not_present", ""}, {"never", ""},
		{"daily", ""}, {"weekly", ""}, {"every_1d12h", ""},
	} {
		t.Run(tc.policy, func(t *testing.T) {
			compose := "services:\n  web:\n    image: x\n    pull_policy: " + tc.policy + "\n"
			dir := repo(t, map[string]string{"stacks/app/compose.yaml": compose})
			_, err := Load(context.Background(), dir, "app", host)
			if tc.why == "" {
				if err != nil {
					t.Fatalf("pull_policy %s: %v", tc.policy, err)
				}
				return
			}
			var e *Error
			if !errors.As(err, &e) || !strings.Contains(e.Msg, "services.web.pull_policy: ") || !strings.Contains(e.Msg, tc.why) || e.Line != 4 {
				t.Fatalf("got %v (line %d), want services.web.pull_policy at line 4: ...%s", err, lineOf(e), tc.why)
			}
		})
	}
}

// A key gitopsd cannot honour makes the stack Invalid at load, naming the
// key and line, rather than running the service without it.
func TestKeysGitopsdCannotCreateAreInvalid(t *testing.T) {
	for _, tc := range []struct{ key, value string }{
		{"credential_spec", "{file: spec.json}"},
		{"mac_address", "02:42:ac:11:65:43"},
		{"use_api_socket", "true"},
	} {
		t.Run(tc.key, func(t *testing.T) {
			compose := "services:\n  web:\n    image: x\n    " + tc.key + ": " + tc.value + "\n"
			dir := repo(t, map[string]string{"stacks/app/compose.yaml": compose})
			_, err := Load(context.Background(), dir, "app", host)
			var e *Error
			if !errors.As(err, &e) || !strings.Contains(e.Msg, "services.web."+tc.key+": gitopsd cannot create this") || e.Line != 4 {
				t.Fatalf("got %v (line %d), want services.web.%s at line 4", err, lineOf(e), tc.key)
			}
		})
	}
}
