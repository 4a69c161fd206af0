package stack

import (
	"bytes"
	"context"
	"encoding/json"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v3"

	"github.com/gitopsd/gitopsd/internal/policy"
	"github.com/gitopsd/gitopsd/internal/testenv"
)

// The corpus (testdata/corpus/<case>/) holds small repositories, each with
// a case.yaml saying what gitopsd must make of its stacks. TestCorpus holds
// every stack to the docker compose CLI: the same services, the same config
// hashes, or the same verdict on a file that does not load. Where gitopsd
// refuses what compose accepts, on purpose, the case says why.

const corpusDir = "testdata/corpus"

// corpusCase is a case.yaml.
type corpusCase struct {
	About string `yaml:"about"`
	Host  struct {
		Name   string            `yaml:"name"`
		Labels map[string]string `yaml:"labels"`
	} `yaml:"host"`
	Policy string                 `yaml:"policy"` // "strict" for the strict host policy
	Env    map[string]string      `yaml:"env"`    // the daemon's process environment
	Stacks map[string]corpusStack `yaml:"stacks"`
}

// corpusStack is what one stack of a case must load to.
type corpusStack struct {
	// Services are the services deployed, sorted.
	Services []string `yaml:"services"`
	// Profiles are x-gitopsd.profiles as gitopsd must read them (nil: the
	// key is absent); compose gets them as --profile.
	Profiles []string `yaml:"profiles"`
	// Files, when given, are the compose files used, relative to the stack.
	Files []string `yaml:"files"`
	// EnvResolved are the services whose `config --hash` differs from
	// the hash of `up` because `config --hash` does not resolve env_file.
	EnvResolved []string `yaml:"env_resolved"`
	// Error is part of gitopsd's error: the stack does not load.
	Error string `yaml:"error"`
	// ComposeError is part of compose's error; empty: compose accepts the
	// stack, and Refused says why gitopsd refuses it anyway.
	ComposeError string `yaml:"compose_error"`
	Refused      string `yaml:"refused"`
}

func readCorpus(t *testing.T) map[string]corpusCase {
	t.Helper()
	entries, err := os.ReadDir(corpusDir)
	if err != nil {
		t.Fatal(err)
	}
	cases := map[string]corpusCase{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(corpusDir, e.Name(), "case.yaml"))
		if err != nil {
			t.Fatalf("corpus case %s: %v", e.Name(), err)
		}
		var c corpusCase
		dec := yaml.NewDecoder(bytes.NewReader(b))
		dec.KnownFields(true)
		if err := dec.Decode(&c); err != nil {
			t.Fatalf("corpus case %s: case.yaml: %v", e.Name(), err)
		}
		if c.Host.Name == "" {
			c.Host.Name = "corpus-1"
		}
		cases[e.Name()] = c
	}
	return cases
}

func (c corpusCase) host() Host {
	h := Host{Name: c.Host.Name, Labels: c.Host.Labels}
	if c.Policy == "strict" {
		rules := policy.Strict()
		h.Policy = &rules
	}
	return h
}

// corpusEnvKeep are the variables docker and the compose plugin need to
// run; no corpus file refers to them.
var corpusEnvKeep = []string{"PATH", "HOME", "TMPDIR", "USER", "DOCKER_CONFIG", "DOCKER_HOST", "DOCKER_CONTEXT", "DOCKER_CERT_PATH", "DOCKER_TLS_VERIFY"}

// isolateEnv leaves the process environment with only what docker needs
// (and Go's own variables), plus the case's, so that nothing of the test
// machine reaches the interpolation of gitopsd or compose.
func isolateEnv(t *testing.T, env map[string]string) {
	t.Helper()
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		if k == "" || slices.Contains(corpusEnvKeep, k) || strings.HasPrefix(k, "GO") {
			continue
		}
		t.Setenv(k, "") // restored when the test ends
		os.Unsetenv(k)
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
}

// corpusStackRun is one stack of the corpus as gitopsd loaded it, and how
// to ask compose about it.
type corpusStackRun struct {
	name    string // <case>/<stack>
	want    corpusStack
	st      *Stack
	err     error
	compose corpusCompose
}

// TestCorpus loads every stack with gitopsd first, one case after the
// other (each case sets the process environment, which gitopsd reads),
// then asks compose about them in parallel, each stack with the
// environment its case had.
func TestCorpus(t *testing.T) {
	composeCmd := testenv.ComposeV2(t)
	cases := readCorpus(t)
	if len(cases) < 12 {
		t.Fatalf("the corpus has %d cases, want at least 12", len(cases))
	}
	var runs []corpusStackRun
	for _, name := range slices.Sorted(maps.Keys(cases)) {
		t.Run("load/"+name, func(t *testing.T) {
			isolateEnv(t, cases[name].Env)
			runs = append(runs, loadCorpusCase(t, composeCmd, name, cases[name])...)
		})
	}
	for _, r := range runs {
		t.Run(r.name, func(t *testing.T) {
			t.Parallel()
			if r.want.Error != "" {
				checkCorpusError(t, r.compose, r.err, r.want)
				return
			}
			checkCorpusStack(t, r.compose, r.st, r.err, r.want)
		})
	}
}

// loadCorpusCase discovers and loads the stacks of one case.
func loadCorpusCase(t *testing.T, composeCmd []string, name string, c corpusCase) []corpusStackRun {
	t.Helper()
	repoDir, err := filepath.Abs(filepath.Join(corpusDir, name))
	if err != nil {
		t.Fatal(err)
	}
	found, err := Discover(repoDir)
	if err != nil {
		t.Fatal(err)
	}
	if want := slices.Sorted(maps.Keys(c.Stacks)); !slices.Equal(found, want) {
		t.Fatalf("Discover found stacks %v, case.yaml has %v", found, want)
	}
	h := c.host()
	var runs []corpusStackRun
	for _, stackName := range found {
		want := c.Stacks[stackName]
		dir := filepath.Join(repoDir, "stacks", stackName)
		st, err := Load(context.Background(), repoDir, stackName, h)
		run := corpusCompose{cmd: composeCmd, env: composeEnv(h, dir), dir: dir, name: stackName, host: h, profiles: want.Profiles}
		if st != nil {
			run.files = st.Files
		}
		runs = append(runs, corpusStackRun{name: name + "/" + stackName, want: want, st: st, err: err, compose: run})
	}
	return runs
}

// checkCorpusStack compares a stack gitopsd loaded with what compose makes
// of it: the services, each service whole, and their config hashes.
func checkCorpusStack(t *testing.T, run corpusCompose, st *Stack, err error, want corpusStack) {
	if err != nil {
		t.Fatalf("gitopsd: %v", err)
	}
	if !slices.Equal(st.Options.Profiles, want.Profiles) || (st.Options.Profiles == nil) != (want.Profiles == nil) {
		t.Errorf("x-gitopsd.profiles read as %q, want %q", st.Options.Profiles, want.Profiles)
	}
	if want.Files != nil {
		var rel []string
		for _, f := range st.Files {
			r, _ := filepath.Rel(st.Dir, f)
			rel = append(rel, filepath.ToSlash(r))
		}
		if !slices.Equal(rel, want.Files) {
			t.Errorf("compose files %v, want %v", rel, want.Files)
		}
	}
	mine := st.Project.ServiceNames()
	sort.Strings(mine)
	if !slices.Equal(mine, want.Services) {
		t.Errorf("gitopsd deploys %v, case.yaml wants %v", mine, want.Services)
	}

	out, err := run.config("--format", "json")
	if err != nil {
		t.Fatalf("docker compose refuses what gitopsd loads: %v\n%s", err, out)
	}
	// config writes every $ doubled, ready to be read as a compose file.
	theirs := composeServices(t, strings.ReplaceAll(out, "$$", "$"))
	if names := slices.Sorted(maps.Keys(theirs)); !slices.Equal(names, mine) {
		t.Errorf("compose deploys %v, gitopsd %v", names, mine)
	}
	out, err = run.config("--hash", "*")
	if err != nil {
		t.Fatalf("docker compose config --hash: %v\n%s", err, out)
	}
	configHashes := parseHashes(out)
	for _, svc := range mine {
		// What `up` hashes is what `config --format json` shows (the
		// environment resolved as up resolves it): compare the whole
		// service, which says more than its hash would.
		if ours := serviceJSON(t, st.Project.Services[svc]); !reflect.DeepEqual(ours, theirs[svc]) {
			t.Errorf("service %s differs from compose's:\ngitopsd: %s\ncompose: %s", svc, mustJSON(ours), mustJSON(theirs[svc]))
		}
		hash, err := ServiceHash(st.Project.Services[svc])
		if err != nil {
			t.Fatal(err)
		}
		switch {
		case slices.Contains(want.EnvResolved, svc) && configHashes[svc] == hash:
			t.Errorf("service %s is listed in env_resolved, but config --hash equals gitopsd's: drop it from the list", svc)
		case !slices.Contains(want.EnvResolved, svc) && configHashes[svc] != hash:
			t.Errorf("service %s: gitopsd hash %s, compose config --hash %s", svc, hash, configHashes[svc])
		}
	}
}

// checkCorpusError asserts both verdicts on a stack gitopsd must refuse.
func checkCorpusError(t *testing.T, run corpusCompose, err error, want corpusStack) {
	if err == nil {
		t.Fatalf("gitopsd loads the stack, want the error %q", want.Error)
	}
	if !strings.Contains(err.Error(), want.Error) {
		t.Errorf("gitopsd's error %q does not contain %q", err, want.Error)
	}
	if overlayFile(run.dir, run.host.Name) != "" {
		t.Fatal("corpus: a stack that must not load cannot use a host overlay (compose would need gitopsd's file list)")
	}
	out, cerr := run.config("--format", "json")
	switch {
	case want.ComposeError != "" && cerr == nil:
		t.Errorf("docker compose accepts the stack, case.yaml says it fails with %q", want.ComposeError)
	case want.ComposeError != "" && !strings.Contains(out, want.ComposeError):
		t.Errorf("docker compose fails with %q, want %q", strings.TrimSpace(out), want.ComposeError)
	case want.ComposeError == "" && cerr != nil:
		t.Errorf("docker compose fails too (%v: %s): say so with compose_error", cerr, strings.TrimSpace(out))
	case want.ComposeError == "" && want.Refused == "":
		t.Error("compose accepts the stack: case.yaml must say in refused why gitopsd does not")
	}
}

// corpusCompose runs `docker compose config` on a corpus stack as a user
// would in its folder: compose finds the files itself (default name or
// COMPOSE_FILE in .env) unless gitopsd added the host's overlay, which
// only gitopsd knows of.
type corpusCompose struct {
	cmd       []string // testenv.ComposeV2
	env       []string // composeEnv
	dir, name string
	host      Host
	files     []string // gitopsd's files, used only with an overlay
	profiles  []string // x-gitopsd.profiles
}

func (r corpusCompose) config(args ...string) (string, error) {
	argv := append(slices.Clone(r.cmd), "-p", r.name)
	if overlayFile(r.dir, r.host.Name) != "" {
		for _, f := range r.files {
			argv = append(argv, "-f", f)
		}
	}
	env := slices.Clone(r.env)
	switch {
	case r.profiles == nil: // COMPOSE_PROFILES of .env, if any
	case len(r.profiles) == 0:
		env = append(env, "COMPOSE_PROFILES=") // set, it hides .env's
	default:
		for _, p := range r.profiles {
			argv = append(argv, "--profile", p)
		}
	}
	argv = append(append(argv, "config"), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = r.dir
	cmd.Env = env
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	if err != nil {
		return stderr.String() + stdout.String(), err
	}
	return stdout.String(), nil
}

// composeEnv is the environment compose runs with: the process's, as the
// case set it, without what gitopsd takes from .env only (compose would
// take it from the environment too), with gitopsd's variables and PWD.
func composeEnv(h Host, dir string) []string {
	env := slices.DeleteFunc(os.Environ(), func(kv string) bool {
		k, _, _ := strings.Cut(kv, "=")
		return slices.Contains(selectionVars, k)
	})
	return append(append(env, HostEnv(h)...), "PWD="+dir)
}

// composeServices reads the services of `config --format json`, as JSON
// values: compose-go's types do not all read back the JSON they write.
func composeServices(t *testing.T, out string) map[string]any {
	t.Helper()
	var project struct {
		Services map[string]any `json:"services"`
	}
	if err := json.Unmarshal([]byte(out), &project); err != nil {
		t.Fatalf("read compose config: %v\n%s", err, out)
	}
	return project.Services
}

// serviceJSON is a service as `config --format json` writes it.
func serviceJSON(t *testing.T, svc types.ServiceConfig) any {
	t.Helper()
	b, err := json.Marshal(svc)
	if err != nil {
		t.Fatal(err)
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatal(err)
	}
	return v
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}
