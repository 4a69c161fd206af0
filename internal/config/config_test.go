package config

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// cleanEnv unsets every override variable for the test, so that the
// environment of whoever runs the tests does not leak in.
func cleanEnv(t *testing.T) {
	t.Helper()
	for _, e := range append(EnvOverrides, Env{Var: "GITOPSD_CONFIG"}) {
		if v, ok := os.LookupEnv(e.Var); ok {
			os.Unsetenv(e.Var)
			t.Cleanup(func() { os.Setenv(e.Var, v) })
		}
	}
}

// writeConfig writes content to a gitopsd.yaml in a fresh directory.
func writeConfig(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "gitopsd.yaml")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestDefault(t *testing.T) {
	c := Default()
	host, _ := os.Hostname()
	want := &Config{
		Source:   Source{Branch: "main", Interval: time.Minute, Timeout: time.Minute},
		Host:     Host{Name: strings.ToLower(host)},
		StateDir: "/var/lib/gitopsd",
		Socket:   "/run/gitopsd/gitopsd.sock",
		Metrics:  "127.0.0.1:9469",
		Drift:    Drift{CheckInterval: time.Minute},
		Images:   Images{MaxBuildContext: "512MiB"},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Default() = %+v, want %+v", c, want)
	}
	// Only the source is missing.
	if err := c.Validate(); err == nil || err.Error() != "config: source.url: required" {
		t.Errorf("Default().Validate() = %v", err)
	}
}

func TestLoadDesignExample(t *testing.T) {
	cleanEnv(t)
	c, err := Load("testdata/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Source: Source{
			URL: "https://git.example.com/ops/fleet.git", Branch: "main", Interval: time.Minute, Timeout: time.Minute,
			Auth:   Auth{SSHKey: "/etc/gitopsd/deploy_key", KnownHosts: "/etc/gitopsd/known_hosts", TokenFile: "/etc/gitopsd/token"},
			Verify: Verify{AllowedSigners: "/etc/gitopsd/allowed_signers"},
		},
		Host:     Host{Name: "edge-01", Labels: map[string]string{"site": "berlin"}},
		StateDir: "/var/lib/gitopsd",
		Socket:   "/run/gitopsd/gitopsd.sock",
		Metrics:  "127.0.0.1:9469",
		Drift:    Drift{CheckInterval: time.Minute},
		Images:   Images{MaxBuildContext: "512MiB"},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("Load(full.yaml) =\n %+v\nwant\n %+v", c, want)
	}
}

func TestLoadDefaultsForMissingKeys(t *testing.T) {
	cleanEnv(t)
	c, err := Load(writeConfig(t, "source:\n  url: /srv/fleet\n  branch:\nhost: {name: Edge-02}\nmetrics: \"\"\n---\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := Default()
	want.Source.URL = "/srv/fleet"
	want.Host.Name = "edge-02" // lower-cased
	want.Metrics = ""          // explicitly disabled
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got %+v, want %+v", c, want)
	}
}

func TestLoadValues(t *testing.T) {
	cleanEnv(t)
	tests := []struct {
		name, yaml string
		check      func(*Config) bool
	}{
		{"duration 30s", "interval: 30s", func(c *Config) bool { return c.Source.Interval == 30*time.Second }},
		{"duration 1h30m", "interval: 1h30m", func(c *Config) bool { return c.Source.Interval == 90*time.Minute }},
		{"source timeout", "timeout: 20s", func(c *Config) bool { return c.Source.Timeout == 20*time.Second }},
		{"branch as written", "branch: 2024.10", func(c *Config) bool { return c.Source.Branch == "2024.10" }},
		{"scp-like url", "url: git@git.example.com:ops/fleet.git", func(c *Config) bool { return c.Source.URL == "git@git.example.com:ops/fleet.git" }},
		{"ssh url", "url: ssh://git@git.example.com:2222/ops/fleet.git", func(c *Config) bool { return strings.HasPrefix(c.Source.URL, "ssh://") }},
		{"file url", "url: file:///srv/fleet.git", func(c *Config) bool { return c.Source.URL == "file:///srv/fleet.git" }},
		{"http url for a local server", "url: http://127.0.0.1:8080/fleet.git", func(c *Config) bool { return c.Source.URL != "" }},
		{"notify urls list", "interval: 1m\nnotify:\n  urls: [ntfy://a/b, 'generic+https://x/y']", func(c *Config) bool {
			return len(c.Notify.URLs) == 2 && c.Notify.URLs[1] == "generic+https://x/y"
		}},
		{"policy keys", "interval: 1m\npolicy:\n  preset: strict\n  devices: true\n  privileged: false\n  capabilities: [NET_ADMIN]\n  bind_paths: []", func(c *Config) bool {
			p := c.Policy
			return p.Preset == PresetStrict && *p.Devices && !*p.Privileged && p.HostNamespaces == nil &&
				len(p.Capabilities) == 1 && p.BindPaths != nil && len(p.BindPaths) == 0 &&
				p.SecurityOptions == nil && p.VolumeDrivers == nil && p.VolumeOptions == nil
		}},
		{"policy volume and security keys", "interval: 1m\npolicy:\n  preset: strict\n  security_options: [apparmor=my-profile, 'seccomp=*', 'label:type:svirt_apache_t']\n  volume_drivers: [rexray/ebs, ALL]\n  volume_options: true", func(c *Config) bool {
			p := c.Policy
			return len(p.SecurityOptions) == 3 && p.SecurityOptions[2] == "label:type:svirt_apache_t" &&
				len(p.VolumeDrivers) == 2 && p.VolumeOptions != nil && *p.VolumeOptions
		}},
		{"verify keyring", "verify: {keyring: /etc/gitopsd/keys.asc}", func(c *Config) bool { return c.Source.Verify.Enabled() }},
		{"verify allow_rewrite", "verify: {allowed_signers: /etc/gitopsd/allowed_signers, allow_rewrite: true}", func(c *Config) bool { return c.Source.Verify.AllowRewrite }},
		{"verify allow_rewrite default", "verify: {keyring: /etc/gitopsd/keys.asc}", func(c *Config) bool { return !c.Source.Verify.AllowRewrite }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			file := "source:\n  url: /srv/fleet\n  " + tt.yaml + "\nhost: {name: h}\n"
			if strings.HasPrefix(tt.yaml, "url:") {
				file = "source:\n  " + tt.yaml + "\nhost: {name: h}\n"
			}
			c, err := Load(writeConfig(t, file))
			if err != nil {
				t.Fatal(err)
			}
			if !tt.check(c) {
				t.Errorf("unexpected config: %+v", c)
			}
		})
	}
}

// Every bad key gives one line naming the file, the line and the key.
func TestLoadErrors(t *testing.T) {
	const ok = "source:\n  url: /srv/fleet\nhost:\n  name: h\n"
	tests := []struct {
		name, yaml string
		env        map[string]string
		want       string // "F" stands for the file's path
	}{
		{"unknown key", "source:\n  url: /srv/fleet\n\n  urll: x\n", nil, "config F: line 4: unknown key source.urll"},
		{"unknown top-level key", ok + "statedir: /x\n", nil, "config F: line 5: unknown key statedir"},
		{"unknown key in flow mapping", "source: {url: /srv/fleet, auth: {ssh_kee: /k}}\n", nil, "config F: line 1: unknown key source.auth.ssh_kee"},
		{"unknown key under webhook", ok + "webhook:\n  listen: ''\n  secret: x\n", nil, "config F: line 7: unknown key webhook.secret"},
		{"duplicate key", ok + "metrics: ''\nmetrics: ':1'\n", nil, "config F: line 6: metrics: duplicate key (first at line 5)"},
		{"bad duration", "source:\n  url: /srv/fleet\n  interval: 1 minute\n", nil, `config F: line 3: source.interval: "1 minute" is not a duration such as 30s, 1m or 1h`},
		{"bare number duration", "source:\n  url: /srv/fleet\n  interval: 60\n", nil, `config F: line 3: source.interval: "60" is not a duration such as 30s, 1m or 1h`},
		{"list for a string", "source:\n  url: [a, b]\n", nil, "config F: line 2: source.url: want a string, not a list"},
		{"string for a mapping", "source: https://x\n", nil, "config F: line 1: source: want a mapping of keys, not a scalar"},
		{"top level not a mapping", "- a\n", nil, "config F: line 1: the file must be a mapping of keys, not a list"},
		{"label value not a string", ok + "  labels: {site: [a]}\n", nil, "config F: line 5: host.labels.site: want a string, not a list"},
		{"yaml syntax", "source:\n  url: [\n", nil, "config F: line 2: invalid YAML: did not find expected node content"},
		{"two documents", ok + "---\nsource: {}\n", nil, "config F: line 5: more than one YAML document"},
		{"merge key", "source: &s {url: /srv/fleet}\nwebhook:\n  <<: *s\n", nil, "config F: line 3: webhook: YAML merge keys (<<) are not supported"},
		{"alias", "source: {url: &u /srv/fleet}\nhost: {name: *u}\n", nil, `config F: line 2: host.name: "/srv/fleet" must be a valid hostname-like name (lowercase letters, digits, '-', '_', '.')`},
		{"url required", "host: {name: h}\n", nil, "config F: source.url: required"},
		{"url empty", "source: {url: ''}\n", nil, "config F: line 1: source.url: required"},
		{"url scheme", "source:\n  url: ftp://x/y\n", nil, `config F: line 2: source.url: unsupported scheme "ftp" (https, http, ssh, git, file, scp-like user@host:path, or a local path)`},
		{"url secret not echoed", "source:\n  url: https://user:s3cret@/x\n", nil, "config F: line 2: source.url: the URL has no host"},
		{"branch ref", "source:\n  url: /srv/fleet\n  branch: refs/heads/main\n", nil, `config F: line 3: source.branch: give the branch name, not a ref ("main", not "refs/heads/main")`},
		{"branch invalid", "source:\n  url: /srv/fleet\n  branch: 'a..b'\n", nil, `config F: line 3: source.branch: "a..b" is not a valid branch name`},
		{"branch space", "source:\n  url: /srv/fleet\n  branch: my branch\n", nil, `config F: line 3: source.branch: "my branch" is not a valid branch name`},
		{"interval too short", "source:\n  url: /srv/fleet\n  interval: 1s\n", nil, "config F: line 3: source.interval: must be at least 5s"},
		{"timeout too short", "source:\n  url: /srv/fleet\n  timeout: 100ms\n", nil, "config F: line 3: source.timeout: must be at least 1s"},
		{"known_hosts with ssh_key", "source:\n  url: git@h:x\n  auth:\n    ssh_key: /k\n", nil, "config F: line 3: source.auth.known_hosts: required with source.auth.ssh_key"},
		{"host name", "source: {url: /srv/fleet}\nhost:\n  name: edge 01\n", nil, `config F: line 3: host.name: "edge 01" must be a valid hostname-like name (lowercase letters, digits, '-', '_', '.')`},
		{"host name dash", "source: {url: /srv/fleet}\nhost:\n  name: -edge\n", nil, `config F: line 3: host.name: "-edge" must be a valid hostname-like name (lowercase letters, digits, '-', '_', '.')`},
		{"label key", ok + "  labels:\n    site: berlin\n    'rack id': '3'\n", nil, "config F: line 7: host.labels.rack id: not a valid label key (letters, digits, '_', '.', '-')"},
		{"state_dir empty", ok + "state_dir: ''\n", nil, "config F: line 5: state_dir: required"},
		{"socket empty", ok + "socket: ''\n", nil, "config F: line 5: socket: required"},
		{"metrics", ok + "metrics: 9469\n", nil, `config F: line 5: metrics: "9469" is not a host:port (empty disables metrics)`},
		{"metrics port", ok + "metrics: 'localhost:http'\n", nil, `config F: line 5: metrics: "localhost:http" is not a host:port (empty disables metrics)`},
		{"webhook listen", ok + "webhook: {listen: 'x'}\n", nil, `config F: line 5: webhook.listen: "x" is not a host:port`},
		{"webhook secret", ok + "webhook:\n  listen: ':8080'\n", nil, "config F: line 5: webhook.secret_file: required when webhook.listen is set"},
		{"policy preset", ok + "policy:\n  preset: lax\n", nil, `config F: line 6: policy.preset: "lax" is not a preset: leave it out (allow everything) or use strict`},
		{"policy bool", ok + "policy:\n  privileged: yes please\n", nil, `config F: line 6: policy.privileged: "yes please" is not true or false`},
		{"policy list", ok + "policy:\n  bind_paths: /srv\n", nil, "config F: line 6: policy.bind_paths: want a list of strings, not a scalar"},
		{"policy bind path", ok + "policy:\n  bind_paths: [srv]\n", nil, `config F: line 6: policy.bind_paths[0]: "srv" must be a clean absolute path`},
		{"policy capability", ok + "policy:\n  capabilities: [net admin]\n", nil, `config F: line 6: policy.capabilities[0]: "net admin" is not a capability such as NET_ADMIN (or ALL)`},
		{"allow_rewrite without verify", "source:\n  url: /srv/fleet\n  verify:\n    allow_rewrite: true\n", nil, "config F: line 4: source.verify.allow_rewrite: needs source.verify.allowed_signers or source.verify.keyring: without them no head is checked"},
		{"allow_rewrite not a bool", "source:\n  url: /srv/fleet\n  verify: {keyring: /k, allow_rewrite: maybe}\n", nil, `config F: line 3: source.verify.allow_rewrite: "maybe" is not true or false`},
		{"policy security option", ok + "policy:\n  security_options: [no-new-privileges, '=unconfined']\n", nil, `config F: line 6: policy.security_options[1]: "=unconfined" is not a security_opt such as apparmor=my-profile or seccomp=* (or ALL)`},
		{"policy volume driver", ok + "policy:\n  volume_drivers: [' local']\n", nil, `config F: line 6: policy.volume_drivers[0]: " local" is not a volume driver name such as rexray/ebs (or ALL)`},
		{"policy volume options", ok + "policy:\n  volume_options: [nfs]\n", nil, `config F: line 6: policy.volume_options: want true or false, not a list`},
		{"notify url item", ok + "notify:\n  urls: [a, [b]]\n", nil, "config F: line 6: notify.urls[1]: want a string, not a list"},

		// Bad values from the environment name the variable, not the file.
		{"env interval", ok, map[string]string{"GITOPSD_SOURCE_INTERVAL": "soon"}, `config: source.interval: "soon" is not a duration such as 30s, 1m or 1h (from GITOPSD_SOURCE_INTERVAL)`},
		{"env interval short", ok, map[string]string{"GITOPSD_SOURCE_INTERVAL": "2s"}, "config: source.interval: must be at least 5s (from GITOPSD_SOURCE_INTERVAL)"},
		{"env empty url", ok, map[string]string{"GITOPSD_SOURCE_URL": ""}, "config: source.url: required (from GITOPSD_SOURCE_URL)"},
		{"env metrics", ok, map[string]string{"GITOPSD_METRICS": "nope"}, `config: metrics: "nope" is not a host:port (empty disables metrics) (from GITOPSD_METRICS)`},
		{"env host", ok, map[string]string{"GITOPSD_HOST_NAME": "a/b"}, `config: host.name: "a/b" must be a valid hostname-like name (lowercase letters, digits, '-', '_', '.') (from GITOPSD_HOST_NAME)`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			cleanEnv(t)
			for k, v := range tt.env {
				t.Setenv(k, v)
			}
			path := writeConfig(t, tt.yaml)
			_, err := Load(path)
			if err == nil {
				t.Fatalf("Load succeeded, want %q", tt.want)
			}
			want := strings.ReplaceAll(tt.want, "config F:", "config "+path+":")
			if err.Error() != want {
				t.Errorf("error\n got: %s\nwant: %s", err, want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Errorf("error spans several lines: %q", err)
			}
			if strings.Contains(err.Error(), "s3cret") {
				t.Errorf("error leaks the URL's secret: %s", err)
			}
			var e *Error
			if !errors.As(err, &e) {
				t.Errorf("error is %T, want *Error", err)
			}
		})
	}
}

func TestEnvOverridesWin(t *testing.T) {
	cleanEnv(t)
	path := writeConfig(t, `
source: {url: https://git.example.com/a.git, branch: main, interval: 1m}
host: {name: file-host, labels: {site: berlin}}
state_dir: /var/lib/a
socket: /run/a.sock
metrics: 127.0.0.1:1
`)
	env := map[string]string{
		"GITOPSD_SOURCE_URL":      "https://git.example.com/b.git",
		"GITOPSD_SOURCE_BRANCH":   "prod",
		"GITOPSD_SOURCE_INTERVAL": "30s",
		"GITOPSD_HOST_NAME":       "ENV-Host",
		"GITOPSD_STATE_DIR":       "/var/lib/b",
		"GITOPSD_SOCKET":          "/run/b.sock",
		"GITOPSD_METRICS":         "", // set and empty: disables
	}
	if len(env) != len(EnvOverrides) {
		t.Fatalf("test covers %d of %d overrides", len(env), len(EnvOverrides))
	}
	for k, v := range env {
		t.Setenv(k, v)
	}
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	want := &Config{
		Source:   Source{URL: "https://git.example.com/b.git", Branch: "prod", Interval: 30 * time.Second, Timeout: time.Minute},
		Host:     Host{Name: "env-host", Labels: map[string]string{"site": "berlin"}},
		StateDir: "/var/lib/b",
		Socket:   "/run/b.sock",
		Metrics:  "",
		Drift:    Drift{CheckInterval: time.Minute},
		Images:   Images{MaxBuildContext: "512MiB"},
	}
	if !reflect.DeepEqual(c, want) {
		t.Errorf("got %+v, want %+v", c, want)
	}
}

func TestRelativePaths(t *testing.T) {
	cleanEnv(t)
	dir := t.TempDir()
	t.Chdir(dir)
	wd, _ := os.Getwd()
	path := writeConfig(t, `
source:
  url: ./repo
  auth: {token_file: secrets/token}
host: {name: demo}
state_dir: ./state
socket: state/gitopsd.sock
webhook: {listen: "127.0.0.1:8080", secret_file: hook.secret}
`)
	c, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	for got, want := range map[string]string{
		c.Source.URL:            filepath.Join(wd, "repo"),
		c.Source.Auth.TokenFile: filepath.Join(wd, "secrets/token"),
		c.StateDir:              filepath.Join(wd, "state"),
		c.Socket:                filepath.Join(wd, "state/gitopsd.sock"),
		c.Webhook.SecretFile:    filepath.Join(wd, "hook.secret"),
	} {
		if got != want {
			t.Errorf("got %q, want %q", got, want)
		}
	}

	// From the environment too.
	t.Setenv("GITOPSD_STATE_DIR", "other")
	if c, err = Load(path); err != nil || c.StateDir != filepath.Join(wd, "other") {
		t.Errorf("GITOPSD_STATE_DIR=other: %q, %v", c.StateDir, err)
	}

	// Remote URLs are left alone.
	for _, u := range []string{"git@host:ops/fleet.git", "https://host/x.git"} {
		t.Setenv("GITOPSD_SOURCE_URL", u)
		if c, err = Load(path); err != nil || c.Source.URL != u {
			t.Errorf("url %s became %q, %v", u, c.Source.URL, err)
		}
	}

	// Validate on its own (a config built in code) wants absolute paths.
	c.StateDir = "state"
	if err := c.Validate(); err == nil || err.Error() != "config: state_dir: must be an absolute path" {
		t.Errorf("Validate(relative state_dir) = %v", err)
	}
}

func TestLoadOrDefault(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "gitopsd.yaml")

	t.Run("default path missing, env only", func(t *testing.T) {
		cleanEnv(t)
		t.Setenv("GITOPSD_SOURCE_URL", "https://git.example.com/fleet.git")
		t.Setenv("GITOPSD_HOST_NAME", "edge-01")
		c, err := LoadOrDefault(missing, false)
		if err != nil {
			t.Fatal(err)
		}
		want := Default()
		want.Source.URL, want.Host.Name = "https://git.example.com/fleet.git", "edge-01"
		if !reflect.DeepEqual(c, want) {
			t.Errorf("got %+v, want %+v", c, want)
		}
	})
	t.Run("default path missing, nothing set", func(t *testing.T) {
		cleanEnv(t)
		_, err := LoadOrDefault(missing, false)
		want := "config: source.url: required (" + missing + " does not exist: defaults and GITOPSD_* variables apply)"
		if err == nil || err.Error() != want {
			t.Errorf("error\n got: %v\nwant: %s", err, want)
		}
	})
	t.Run("explicit path missing", func(t *testing.T) {
		cleanEnv(t)
		t.Setenv("GITOPSD_SOURCE_URL", "https://git.example.com/fleet.git")
		_, err := LoadOrDefault(missing, true)
		if err == nil || err.Error() != "config "+missing+": no such file or directory" || !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("error = %v", err)
		}
		if _, err := Load(missing); err == nil {
			t.Error("Load of a missing file succeeded")
		}
	})
	t.Run("file present", func(t *testing.T) {
		cleanEnv(t)
		path := writeConfig(t, "source: {url: /srv/fleet}\nhost: {name: h}\n")
		for _, explicit := range []bool{false, true} {
			if c, err := LoadOrDefault(path, explicit); err != nil || c.Source.URL != "/srv/fleet" {
				t.Errorf("explicit=%v: %+v, %v", explicit, c, err)
			}
		}
	})
	t.Run("empty file", func(t *testing.T) {
		cleanEnv(t)
		path := writeConfig(t, "# nothing yet\n")
		_, err := LoadOrDefault(path, true)
		if err == nil || err.Error() != "config "+path+": source.url: required" {
			t.Errorf("error = %v", err)
		}
	})
}

// Validate on configs built in code, as the daemon's tests build them.
func TestValidate(t *testing.T) {
	base := func() *Config {
		c := Default()
		c.Source.URL = "/srv/fleet"
		c.Host.Name = "testhost"
		return c
	}
	tests := []struct {
		name   string
		change func(*Config)
		want   string // "" for valid
	}{
		{"valid", func(*Config) {}, ""},
		{"metrics disabled", func(c *Config) { c.Metrics = "" }, ""},
		{"metrics every interface", func(c *Config) { c.Metrics = ":9469" }, ""},
		{"metrics ipv6", func(c *Config) { c.Metrics = "[::1]:9469" }, ""},
		{"webhook", func(c *Config) { c.Webhook = Webhook{Listen: ":8080", SecretFile: "/etc/gitopsd/hook"} }, ""},
		{"labels", func(c *Config) { c.Host.Labels = map[string]string{"site": "berlin", "rack.id_2-b": ""} }, ""},
		{"ssh", func(c *Config) {
			c.Source.URL = "git@git.example.com:ops/fleet.git"
			c.Source.Auth = Auth{SSHKey: "/k", KnownHosts: "/kh"}
		}, ""},
		{"relative local url", func(c *Config) { c.Source.URL = "fleet" }, "config: source.url: a local repository path must be absolute"},
		{"scp without host", func(c *Config) { c.Source.URL = "git@:x" }, "config: source.url: the scp-like address has no host"},
		{"file url without path", func(c *Config) { c.Source.URL = "file://" }, "config: source.url: the file:// URL has no path"},
		{"no branch", func(c *Config) { c.Source.Branch = "" }, "config: source.branch: required"},
		{"branch lock", func(c *Config) { c.Source.Branch = "main.lock" }, `config: source.branch: "main.lock" is not a valid branch name`},
		{"interval zero", func(c *Config) { c.Source.Interval = 0 }, "config: source.interval: must be at least 5s"},
		{"no host name", func(c *Config) { c.Host.Name = "" }, "config: host.name: required (the hostname of this machine is unknown)"},
		{"upper-case host name", func(c *Config) { c.Host.Name = "Edge" }, `config: host.name: "Edge" must be a valid hostname-like name (lowercase letters, digits, '-', '_', '.')`},
		{"label key", func(c *Config) { c.Host.Labels = map[string]string{"a": "", "b=c": ""} }, "config: host.labels.b=c: not a valid label key (letters, digits, '_', '.', '-')"},
		{"relative token file", func(c *Config) { c.Source.Auth.TokenFile = "token" }, "config: source.auth.token_file: must be an absolute path"},
		{"relative socket", func(c *Config) { c.Socket = "x.sock" }, "config: socket: must be an absolute path"},
		{"metrics port zero", func(c *Config) { c.Metrics = "127.0.0.1:0" }, `config: metrics: "127.0.0.1:0" is not a host:port (empty disables metrics)`},
		{"webhook secret relative", func(c *Config) { c.Webhook = Webhook{Listen: ":1", SecretFile: "s"} }, "config: webhook.secret_file: must be an absolute path"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := base()
			tt.change(c)
			err := c.Validate()
			switch {
			case tt.want == "" && err != nil:
				t.Errorf("Validate() = %v, want nil", err)
			case tt.want != "" && (err == nil || err.Error() != tt.want):
				t.Errorf("Validate()\n got: %v\nwant: %s", err, tt.want)
			}
		})
	}
}

func TestDriftCheckInterval(t *testing.T) {
	c := Default()
	c.Source.URL = "/srv/fleet.git"
	c.Drift.CheckInterval = 500 * time.Millisecond
	if err := c.Validate(); err == nil || err.Error() != "config: drift.check_interval: must be at least 1s" {
		t.Fatalf("Validate: %v", err)
	}
}
