package main

import (
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

// TestValidateJudgesTheCorpus runs `gitopsd validate` over every case of
// the stack loader's compose corpus (internal/stack/testdata/corpus, where
// each stack is held to the docker compose CLI): validate must find the
// same stacks, pass the same ones with their services, and refuse the
// same ones with the same error.
func TestValidateJudgesTheCorpus(t *testing.T) {
	corpus := filepath.Join("..", "..", "internal", "stack", "testdata", "corpus")
	entries, err := os.ReadDir(corpus)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) == 0 {
		t.Fatal("the corpus is empty")
	}
	for _, e := range entries {
		t.Run(e.Name(), func(t *testing.T) {
			t.Parallel()
			dir := filepath.Join(corpus, e.Name())
			c := readValidateCase(t, filepath.Join(dir, "case.yaml"))
			out, errOut, code := validateIsolated(t, c, dir)
			wantCode := 0
			for _, name := range sortedStacks(c.Stacks) {
				want := c.Stacks[name]
				if want.Error != "" {
					wantCode = 1
					line := "invalid  " + name + ": "
					if got := lineStarting(out, line); !strings.Contains(got, want.Error) {
						t.Errorf("validate says %q about %s, want an error containing %q\n%s", got, name, want.Error, out)
					}
					continue
				}
				line := fmt.Sprintf("ok       %s (%d services", name, len(want.Services))
				if lineStarting(out, line) == "" {
					t.Errorf("validate does not say %q\n%s%s", line, out, errOut)
				}
			}
			if got := strings.Count(out, "\n"); got != len(c.Stacks) {
				t.Errorf("validate reports %d stacks, the case has %d\n%s", got, len(c.Stacks), out)
			}
			if code != wantCode {
				t.Errorf("validate exits %d, want %d\n%s%s", code, wantCode, out, errOut)
			}
		})
	}
}

// validateCase is what this test reads of a corpus case.yaml.
type validateCase struct {
	Host struct {
		Name   string            `yaml:"name"`
		Labels map[string]string `yaml:"labels"`
	} `yaml:"host"`
	Policy string            `yaml:"policy"`
	Env    map[string]string `yaml:"env"`
	Stacks map[string]struct {
		Services []string `yaml:"services"`
		Error    string   `yaml:"error"`
	} `yaml:"stacks"`
}

func readValidateCase(t *testing.T, path string) validateCase {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var c validateCase
	if err := yaml.Unmarshal(b, &c); err != nil {
		t.Fatalf("%s: %v", path, err)
	}
	if c.Host.Name == "" {
		c.Host.Name = "corpus-1"
	}
	return c
}

// validateIsolated runs `gitopsd validate` on a case as its case.yaml
// says: the host, its labels and policy, and an environment holding only
// what the case sets (beside what a process needs to run), so that
// nothing of the test machine's interpolates.
func validateIsolated(t *testing.T, c validateCase, dir string) (string, string, int) {
	t.Helper()
	argv := []string{"validate", dir, "--host", c.Host.Name}
	for _, k := range sortedStacks(c.Host.Labels) {
		argv = append(argv, "--label", k+"="+c.Host.Labels[k])
	}
	if c.Policy == "strict" {
		argv = append(argv, "--strict")
	}
	env := []string{"PATH=" + os.Getenv("PATH"), "HOME=" + os.Getenv("HOME")}
	for k, v := range c.Env {
		env = append(env, k+"="+v)
	}
	cmd := exec.Command(binary, argv...)
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case errors.As(err, &ee):
		return stdout.String(), stderr.String(), ee.ExitCode()
	case err != nil:
		t.Fatalf("run gitopsd %v: %v", argv, err)
	}
	return stdout.String(), stderr.String(), 0
}

// lineStarting is the line of out that starts with prefix, or "".
func lineStarting(out, prefix string) string {
	for _, line := range strings.Split(out, "\n") {
		if strings.HasPrefix(line, prefix) {
			return line
		}
	}
	return ""
}

func sortedStacks[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}
