package config_test

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"

	"github.com/gitopsd/gitopsd/internal/config"
)

// FuzzLoad feeds the config loader any file: it never panics, a bad file is
// a *config.Error naming the file (and a line that exists in it), and a
// file it accepts is a valid configuration, the same on every load.
func FuzzLoad(f *testing.F) {
	// The fuzz run must not depend on who runs it: every GITOPSD_* override
	// is unset, in each fuzz worker too (they run this function).
	for _, e := range append(config.EnvOverrides, config.Env{Var: "GITOPSD_CONFIG"}) {
		if v, ok := os.LookupEnv(e.Var); ok {
			os.Unsetenv(e.Var)
			f.Cleanup(func() { os.Setenv(e.Var, v) })
		}
	}
	full, err := os.ReadFile("testdata/full.yaml")
	if err != nil {
		f.Fatal(err)
	}
	for _, s := range configSeeds(string(full)) {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(t.TempDir(), "gitopsd.yaml")
		if err := os.WriteFile(path, data, 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := config.Load(path)
		if err != nil {
			var e *config.Error
			if !errors.As(err, &e) {
				t.Fatalf("error %q is a %T, not a *config.Error", err, err)
			}
			msg := err.Error()
			// Nothing comes from the environment: the error names the file.
			if !strings.HasPrefix(msg, "config "+path+": ") || e.File != path {
				t.Fatalf("error %q does not start with \"config %s: \" (File %q)", msg, path, e.File)
			}
			if e.Msg == "" {
				t.Errorf("error %q has no message", msg)
			}
			if lines := yamlLines(data); e.Line < 0 || e.Line > lines {
				t.Errorf("error %q names line %d of a %d-line file", msg, e.Line, lines)
			}
			again, err2 := config.Load(path)
			if again != nil || err2 == nil || err2.Error() != msg {
				t.Errorf("second load: %v, %v; first: %q", again, err2, msg)
			}
			return
		}
		if c == nil {
			t.Fatal("Load returned neither a config nor an error")
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("Load accepted a config that does not validate: %v", err)
		}
		if c.Source.URL == "" {
			t.Error("accepted config has no source.url")
		}
		if c.Host.Name != strings.ToLower(c.Host.Name) {
			t.Errorf("host name %q is not lower-cased", c.Host.Name)
		}
		for _, p := range []string{c.StateDir, c.Socket} {
			if !filepath.IsAbs(p) {
				t.Errorf("path %q is not absolute", p)
			}
		}
		again, err := config.Load(path)
		if err != nil || !reflect.DeepEqual(c, again) {
			t.Errorf("second load differs: %+v, %v; first %+v", again, err, c)
		}
	})
}

// yamlLines counts the lines of data as YAML does (and so as the loader's
// errors number them): besides \n, a lone \r and the Unicode breaks NEL,
// LS and PS each end a line; \r\n is one break.
func yamlLines(data []byte) int {
	s := strings.ReplaceAll(string(data), "\r\n", "\n")
	return 1 + strings.Count(s, "\n") + strings.Count(s, "\r") +
		strings.Count(s, "\u0085") + strings.Count(s, "\u2028") + strings.Count(s, "\u2029")
}

// configSeeds are the documented example, variants of it, and hostile files.
func configSeeds(full string) []string {
	const ok = "source:\n  url: /srv/fleet\nhost:\n  name: h\n"
	seeds := []string{
		full,
		ok,
		strings.Replace(full, "interval: 1m", "interval: 1h30m", 1),
		strings.Replace(full, "https://git.example.com/ops/fleet.git", "git@git.example.com:ops/fleet.git", 1),
		strings.Replace(full, "https://git.example.com/ops/fleet.git", "ssh://git@git.example.com:2222/ops/fleet.git", 1),
		strings.Replace(full, "https://git.example.com/ops/fleet.git", "file:///srv/fleet.git", 1),
		strings.Replace(full, `webhook: {listen: "", secret_file: ""}`, "webhook: {listen: \":9470\", secret_file: /etc/gitopsd/webhook.secret}", 1),
		strings.Replace(full, "branch: main", "branch: release/2024.10", 1),
		ok + "state_dir: ./state\nsocket: run/gitopsd.sock\nmetrics: \"\"\n",
		ok + "  labels: {site: berlin, tier.level: \"2\", gpu: \"yes\"}\n",
		ok + "drift: {check_interval: 30s}\nbackup: {identity_file: /etc/gitopsd/age.key}\n",
		ok + "notify:\n  webhook: https://hooks.example.com/x\n  urls: [\"slack://token@channel\", \"ntfy://ntfy.sh/topic\"]\n",
		ok + "secrets: {age_key_file: /etc/gitopsd/age.key}\npolicy:\n  preset: strict\n  privileged: false\n  capabilities: [NET_ADMIN, CAP_SYS_TIME]\n  bind_paths: [/srv, /var/lib/data]\n",
		ok + "source:\n  verify: {keyring: /etc/gitopsd/keys.asc}\n",
		"# only a comment\n",
		"",
		"---\n",
		ok + "---\n",
		// Hostile.
		ok + "statedir: /x\n",
		ok + "metrics: ''\nmetrics: ':1'\n",
		"source:\n  url: [a, b]\n",
		"source: https://x\n",
		"- a\n",
		"source:\n  url: /srv/fleet\n  interval: 9999999999h\n",
		"source:\n  url: /srv/fleet\n  interval: -5m\n",
		"source:\n  url: /srv/fleet\n  interval: 99999999999999999999999999999\n",
		"source:\n  url: /srv/fleet\n  interval: 0x7fffffffffffffff\n",
		"source:\n  url: /srv/fleet\n  interval: .inf\n",
		ok + "drift: {check_interval: 1ns}\n",
		ok + "webhook: {listen: \"[::1]:99999\", secret_file: x}\n",
		ok + "policy: {privileged: yes, devices: 1, capabilities: [~, null]}\n",
		ok + "policy: {bind_paths: [/a/../b, relative]}\n",
		ok + "policy: {security_options: ['seccomp={\"defaultAction\":\"SCMP_ACT_ALLOW\"}', '', ALL], volume_drivers: [-x], volume_options: 1}\n",
		"source: {url: &u /srv/fleet}\nhost: {name: *u}\n",
		"source: &s {url: /srv/fleet}\nwebhook:\n  <<: *s\n",
		"source: &a {url: /srv/fleet, auth: *a}\n",
		"? [complex, key]\n: value\n",
		"source: !!binary aGVsbG8=\n",
		"source:\n\turl: /srv/fleet\n",
		"host: {name: \"\xff\xfe\"}\nsource: {url: /srv/fleet}\n",
		"host: {name: " + strings.Repeat("a", 300) + "}\nsource: {url: /srv/fleet}\n",
		"source: " + strings.Repeat("[", 10000) + "\n",
		"source: {url: \"https://user:token@[::1\"}\nhost: {name: h}\n",
		"source: {url: \"user@:path\"}\nhost: {name: h}\n",
		"source: {url: /srv/fleet, branch: \"refs/heads/main\"}\nhost: {name: h}\n",
		"source: {url: /srv/fleet, branch: \"a..b\"}\nhost: {name: h}\n",
		// Line breaks other than \n: YAML counts each as a new line.
		"\ra", "source:\r  url: /srv/fleet\rhost: {name: [h]}\r",
		"\u0085a", "\u2028a", "\u2029a", "source:\r\n  url: 1\r\n  url: 2\r\n",
	}
	// A "billion laughs" file: nine aliases per level, ten levels.
	var bomb strings.Builder
	bomb.WriteString("x0: &x0 [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n")
	for i := 1; i <= 10; i++ {
		p := fmt.Sprintf("*x%d", i-1)
		fmt.Fprintf(&bomb, "x%d: &x%d [%s]\n", i, i, strings.Join([]string{p, p, p, p, p, p, p, p, p}, ", "))
	}
	seeds = append(seeds, bomb.String(), ok+"notify:\n  urls: &l [a, b]\npolicy:\n  capabilities: *l\n  bind_paths: *l\n")
	return seeds
}
