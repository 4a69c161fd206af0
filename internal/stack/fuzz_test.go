package stack_test

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"testing"
	"time"

	"github.com/gitopsd/gitopsd/internal/stack"
)

// Load is bounded by this context; fuzzLoadBound is how long it may take
// before the fuzzer calls it a hang. The bound is far above the timeout so
// that a busy 2-core machine does not fail it, and far below the hours a
// hang takes.
const (
	fuzzLoadTimeout = 2 * time.Second
	fuzzLoadBound   = 10 * fuzzLoadTimeout
)

// FuzzLoad feeds the stack loader a compose.yaml and a .env, as a commit to
// the repository could: loading never panics, returns in bounded time, and
// either fails with an error naming the stack or gives a stack that says
// what to run.
func FuzzLoad(f *testing.F) {
	for _, s := range loadSeeds() {
		f.Add([]byte(s.compose), []byte(s.env))
	}
	// A 1 MiB string, near the loader's file limit. Only replayed: as a
	// base for mutations it slows the fuzzer twentyfold for little gain.
	if !fuzzing() {
		big := "services:\n  web:\n    image: x\n    environment:\n      BIG: "
		f.Add([]byte(big+strings.Repeat("a", 1<<20-len(big)-1)+"\n"), []byte(nil))
		f.Add([]byte(big+strings.Repeat("a", 1<<20)+"\n"), []byte(nil))
	}
	f.Fuzz(func(t *testing.T, compose, env []byte) {
		files := map[string][]byte{"compose.yaml": compose}
		if len(env) > 0 {
			files[".env"] = env
		}
		fuzzLoadStack(t, files)
	})
}

// FuzzLoadReferences feeds the stack loader a compose.yaml and the files it
// may name, as a commit could: an env file (ref.env), a label file
// (ref.labels), a file named like no YAML file that extends or include
// parse as YAML (ref.txt), and the file of a secret or config (ref.bin).
// The loader judges each before reading it; loading never panics, returns
// in bounded time, and fails with an error naming the stack, or gives a
// stack that says what to run.
func FuzzLoadReferences(f *testing.F) {
	for _, s := range referenceSeeds() {
		f.Add([]byte(s.compose), []byte(s.env), []byte(s.labels), []byte(s.txt), []byte(s.bin))
	}
	f.Fuzz(func(t *testing.T, compose, env, labels, txt, bin []byte) {
		fuzzLoadStack(t, map[string][]byte{
			"compose.yaml": compose,
			"ref.env":      env,
			"ref.labels":   labels,
			"ref.txt":      txt,
			"ref.bin":      bin,
		})
	})
}

// fuzzLoadStack writes files into the folder of stack s and loads it.
func fuzzLoadStack(t *testing.T, files map[string][]byte) {
	host := stack.Host{Name: "h", Labels: map[string]string{"site": "berlin", "tier.level": "2"}}
	repoDir := t.TempDir()
	dir := filepath.Join(repoDir, "stacks", "s")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), content, 0o644); err != nil {
			t.Fatal(err)
		}
	}

	type result struct {
		st    *stack.Stack
		err   error
		panic any
		stack []byte
	}
	done := make(chan result, 1)
	ctx, cancel := context.WithTimeout(context.Background(), fuzzLoadTimeout)
	defer cancel()
	go func() {
		// Load runs in its own goroutine so that a hang fails the test
		// instead of stalling it; a panic is brought back to the test.
		defer func() {
			if r := recover(); r != nil {
				done <- result{panic: r, stack: debug.Stack()}
			}
		}()
		st, err := stack.Load(ctx, repoDir, "s", host)
		done <- result{st: st, err: err}
	}()
	var res result
	select {
	case res = <-done:
	case <-time.After(fuzzLoadBound):
		// The goroutine is left behind: a hang cannot be stopped.
		t.Fatalf("Load did not return within %s (context timeout %s)", fuzzLoadBound, fuzzLoadTimeout)
	}
	if res.panic != nil {
		t.Fatalf("Load panicked: %v\n%s", res.panic, res.stack)
	}

	if res.err != nil {
		if res.st != nil {
			t.Errorf("Load returned both a stack and the error %v", res.err)
		}
		msg := res.err.Error()
		if strings.TrimSpace(msg) == "" {
			t.Fatalf("Load failed with an empty message (%T)", res.err)
		}
		var e *stack.Error
		if errors.As(res.err, &e) {
			if e.Stack != "s" {
				t.Errorf("error %q names stack %q, want s", msg, e.Stack)
			}
			// A user finds the file in the repository: a path of this
			// stack's folder, relative to the repository root.
			if e.File != "" && (!strings.HasPrefix(e.File, "stacks/s/") || strings.Contains(e.File, "..")) {
				t.Errorf("error %q names file %q, not a file of stacks/s/", msg, e.File)
			}
			if e.Line > 0 && e.File == "" {
				t.Errorf("error %q has line %d but no file", msg, e.Line)
			}
		}
		return
	}

	st := res.st
	if st == nil {
		t.Fatal("Load returned neither a stack nor an error")
	}
	if st.Name != "s" || st.Project == nil || st.Project.Name != "s" {
		t.Fatalf("loaded stack %q (project %v), want s", st.Name, st.Project)
	}
	if st.Dir != dir {
		t.Errorf("stack dir %s, want %s", st.Dir, dir)
	}
	for name, svc := range st.Project.Services {
		if svc.Image == "" && svc.Build == nil {
			t.Errorf("service %q has neither image nor build", name)
		}
	}
	if st.Options.Drift != stack.DriftHeal && st.Options.Drift != stack.DriftReport {
		t.Errorf("drift policy %q", st.Options.Drift)
	}
}

type referenceSeed struct{ compose, env, labels, txt, bin string }

// referenceSeeds name the referenced files in every way the loader reads
// them, then in hostile ways.
func referenceSeeds() []referenceSeed {
	all := `services:
  web:
    image: x
    env_file: [ref.env]
    label_file: [ref.labels]
    secrets: [s]
    configs: [c]
  base:
    extends: {file: ref.txt, service: base}
secrets:
  s: {file: ./ref.bin}
configs:
  c: {file: ./ref.bin}
`
	base := "services:\n  base:\n    image: y\n    environment: {FROM: base}\n"
	return []referenceSeed{
		{compose: all, env: "A=1\nB=\"two words\"\n", labels: "team=core\ntier=${A:-x}\n", txt: base, bin: "a config\n"},
		{compose: "include: [ref.txt]\nservices:\n  web:\n    image: x\n    label_file: ref.labels\n", labels: "a=b\n", txt: base},
		{compose: "include:\n  - path: ref.txt\n    env_file: ref.env\nservices:\n  web:\n    image: x\n", env: "TAG=1\n", txt: "services:\n  lib:\n    image: y:${TAG}\n"},
		{compose: "services:\n  web:\n    image: x\n    env_file: {path: ref.env, format: raw}\n", env: "RAW=$not interpolated\n"},
		// Hostile: an alias bomb behind .txt, host files, a label file
		// that does not parse, a name that climbs out.
		{compose: "services:\n  web:\n    extends: {file: ref.txt, service: base}\n", txt: aliasBomb(3) + "  base:\n    image: x\n"},
		{compose: "include: [ref.txt]\nservices:\n  web:\n    image: x\n", txt: "a: &a [*a]\n"},
		{compose: "services:\n  web:\n    image: x\n    label_file: [/dev/zero, /etc/shadow]\n"},
		{compose: "services:\n  web:\n    image: x\n    label_file: [../s/ref.labels, ref.labels]\n", labels: "\"unterminated\n"},
		{compose: "services:\n  web:\n    image: x\n    configs: [c]\nconfigs:\n  c: {file: /dev/zero}\n"},
		{compose: "services:\n  web:\n    extends: {file: /dev/zero, service: base}\n"},
		{compose: "services:\n  web:\n    image: x\n    label_file: [ref.labels]\nx-gitopsd:\n  targets: {hosts: [\"other-*\"]}\n", labels: "a=b\n"},
	}
}

// fuzzing says whether this run mutates inputs (-fuzz) rather than only
// replaying the seeds and the corpus.
func fuzzing() bool {
	fl := flag.Lookup("test.fuzz")
	return fl != nil && fl.Value.String() != ""
}

type loadSeed struct{ compose, env string }

// loadSeeds are realistic stacks, then hostile ones. An input that makes
// Load panic or hang is not here but in testdata/fuzz/FuzzLoad/, where the
// fuzzer writes it.
func loadSeeds() []loadSeed {
	realistic := []loadSeed{
		{compose: "services:\n  web:\n    image: nginx:1.27\n"},
		// Profiles, from .env and from x-gitopsd, and COMPOSE_FILE naming
		// the main file (the only file a fuzzed stack has).
		{compose: "services:\n  web:\n    image: a\n  debug:\n    image: b\n    profiles: [debug]\n", env: "COMPOSE_PROFILES=debug,metrics\n"},
		{compose: "x-gitopsd:\n  profiles: [\"${GITOPSD_LABEL_SITE}\", debug]\nservices:\n  web:\n    image: a\n    profiles: [berlin]\n    depends_on: [tool]\n  tool:\n    image: b\n    profiles: [debug]\n"},
		{compose: "services:\n  web:\n    image: a\n", env: "COMPOSE_FILE=compose.yaml:compose.yaml\nCOMPOSE_PATH_SEPARATOR=:\n"},
		{compose: `services:
  web:
    image: ghcr.io/acme/web:${TAG:-1.4}
    ports: ["8080:80", "127.0.0.1:9000:9000/udp", "443"]
    volumes:
      - ./conf:/etc/nginx/conf.d:ro
      - data:/var/lib/web
      - {type: tmpfs, target: /scratch}
    environment:
      SITE: ${GITOPSD_LABEL_SITE}
      HOST: ${GITOPSD_HOST}
      LEVEL: $GITOPSD_LABEL_TIER_LEVEL
    restart: unless-stopped
volumes:
  data: {}
`, env: "TAG=1.5\n"},
		{compose: `services:
  db:
    image: postgres:16
    env_file: [db.env]
    healthcheck:
      test: ["CMD-SHELL", "pg_isready -U postgres"]
      interval: 5s
      timeout: 2s
      retries: 5
      start_period: 10s
  app:
    image: acme/app:2
    depends_on:
      db: {condition: service_healthy}
    deploy:
      replicas: 3
      update_config: {order: start-first, failure_action: rollback}
      resources: {limits: {memory: 128M, cpus: "0.5"}}
`},
		{compose: `services:
  app:
    build:
      context: .
      dockerfile: Dockerfile
      args: {VERSION: "${VERSION:-dev}"}
    profiles: [dev]
  worker:
    image: acme/worker:1
    profiles: [jobs]
  api:
    image: acme/api:1
`},
		{compose: `x-common: &common
  restart: always
  logging:
    driver: json-file
    options: {max-size: 10m}
  environment: &env
    TZ: UTC
services:
  a:
    <<: *common
    image: acme/a:1
  b:
    <<: *common
    image: acme/b:1
    environment:
      <<: *env
      EXTRA: "yes"
`},
		{compose: `services:
  web:
    image: nginx
x-gitopsd:
  targets:
    hosts: ["edge-*", "h"]
    labels: {site: berlin}
  drift: report
  backup:
    volumes: {data: {schedule: "0 3 * * *"}}
  health: {timeout: 2m}
  update: {policy: semver}
`},
		{compose: "services:\n  web:\n    image: nginx\nx-gitopsd: {drift: heal, targets: {hosts: [\"[a-z]*\"]}}\n"},
		{compose: "services:\n  web:\n    image: ${IMAGE?set IMAGE in .env}\n    command: [\"serve\", \"--name=${NAME:-web}\", \"$${LITERAL}\"]\n", env: "IMAGE=acme/web:3\nNAME=\"quoted value\"\n# comment\nexport EXPORTED=1\n"},
		{compose: "services:\n  web:\n    image: ${GITOPSD_FUZZ_UNSET?the image is required}\n"},
		{compose: `name: ignored
services:
  web:
    image: acme/web
    networks: [front, back]
    secrets: [token]
    configs: [app]
    labels: {traefik.enable: "true"}
    network_mode: ""
networks:
  front: {}
  back: {internal: true}
secrets:
  token: {file: ./token.txt}
configs:
  app: {content: "key=value"}
`},
		{compose: "services:\n  a:\n    image: x\n    depends_on: [b]\n  b:\n    image: x\n    depends_on: [a]\n"},
		{compose: "services:\n  a:\n    image: x\n    volumes_from: [b]\n    network_mode: service:b\n  b:\n    image: x\n    platform: linux/arm64\n"},
		{compose: "include:\n  - other.yaml\nservices:\n  web:\n    image: x\n    extends: {file: base.yaml, service: base}\n"},
		{compose: "services:\n  web:\n    image: x\n    ports: [\"99999:80\", \"a:b:c:d\"]\n"},
		{compose: "services:\n  web:\n    image: x\n    environment:\n      - A=${B:?}\n", env: "B=\n"},
		{compose: "services:\n  web:\n    image: x\n", env: "A=\"unterminated\nB=2\n"},
		{compose: "services:\n  web:\n    image: x\n", env: "1BAD-NAME=x\n"},
		{compose: "services: {}\n"},
		{compose: ""},
	}
	hostile := []loadSeed{
		// A small alias bomb: 9^3 strings from 4 lines. The fuzzer grows it.
		{compose: aliasBomb(2)},
		{compose: "services:\n  web:\n    image: x\n    command: " + strings.Repeat("[", 5000) + strings.Repeat("]", 5000) + "\n"},
		{compose: "services: " + strings.Repeat("[", 10000) + "\n"},
		{compose: "services:\n  web:\n    image: \"\xff\xfe\x80\"\n    \xc3\x28: 1\n"},
		{compose: "services:\n\tweb:\n\t\timage: x\n"},
		{compose: "services:\n  web:\n    image: x\n    env_file: ../../etc/passwd\n"},
		{compose: "services:\n  web:\n    image: x\n    env_file: /etc/passwd\n"},
		{compose: "services:\n  web:\n    image: x\n", env: "A=" + strings.Repeat("$", 1000) + "\n"},
		{compose: "a: &a [*a]\n"},
		{compose: "services:\n  web:\n    image: x\n    labels: !!binary aGVsbG8=\n    !reset ports: []\n"},
		{compose: "services:\n  web: !reset\n    image: x\n  web2: !override\n    image: y\n"},
		{compose: "---\nservices: {}\n---\nservices: {a: {image: x}}\n"},
		{compose: "services:\n  web:\n    image: x\n    deploy: {replicas: 99999999999999999999}\n"},
		{compose: "services:\n  web:\n    image: x\n    'additional properties': 1\n"},
	}
	return append(realistic, hostile...)
}

// aliasBomb is a "billion laughs" compose file: each of levels lines
// refers nine times to the one before, so the loader, expanding aliases,
// meets 9^(levels+1) strings.
func aliasBomb(levels int) string {
	var b strings.Builder
	b.WriteString("x-l0: &l0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n")
	for i := 1; i <= levels; i++ {
		p := fmt.Sprintf("*l%d", i-1)
		fmt.Fprintf(&b, "x-l%d: &l%d [%s]\n", i, i, strings.Join([]string{p, p, p, p, p, p, p, p, p}, ", "))
	}
	b.WriteString("services:\n  web:\n    image: x\n")
	return b.String()
}
