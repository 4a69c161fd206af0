package config

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestReportKeys: report: is read from the file and checked: a provider of
// the three, an http(s) url, an absolute token_file required with the
// provider; the keys without a provider are refused, not ignored.
func TestReportKeys(t *testing.T) {
	cleanEnv(t)
	dir := t.TempDir()
	file := filepath.Join(dir, "gitopsd.yaml")
	const head = "source: {url: /srv/fleet}\nhost: {name: edge-01}\n"
	for _, tc := range []struct{ text, want string }{
		{head + "report:\n  provider: gitlab\n  url: https://gitlab.example.com/api/v4\n  token_file: /etc/gitopsd/status_token\n", ""},
		{head + "report: {provider: gitea, token_file: /t}\n", ""},
		{head + "report:\n  provider: bitbucket\n  token_file: /t\n", `report.provider: "bitbucket" is not a provider: github, gitlab or gitea`},
		{head + "report:\n  provider: github\n", "report.token_file: required with report.provider"},
		{head + "report:\n  provider: github\n  token_file: token\n", "report.token_file: must be an absolute path"},
		{head + "report:\n  provider: github\n  url: api.github.com\n  token_file: /t\n", `report.url: "api.github.com" is not an http(s) URL`},
		{head + "report:\n  token_file: /t\n", "report.provider: required with report.url or report.token_file"},
		{head + "report:\n  provider: github\n  token: abc\n", "line 5: unknown key report.token"},
	} {
		if err := os.WriteFile(file, []byte(tc.text), 0o600); err != nil {
			t.Fatal(err)
		}
		c, err := Load(file)
		switch {
		case tc.want == "" && err != nil:
			t.Errorf("%q: %v", tc.text, err)
		case tc.want == "" && c.Report.Provider == "":
			t.Errorf("%q: report not read: %+v", tc.text, c.Report)
		case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
			t.Errorf("%q: error %v, want %q", tc.text, err, tc.want)
		}
	}
}

// TestFleetKeys: fleet.prometheus is read, and must be an http(s) URL.
func TestFleetKeys(t *testing.T) {
	cleanEnv(t)
	file := filepath.Join(t.TempDir(), "gitopsd.yaml")
	const head = "source: {url: /srv/fleet}\nhost: {name: edge-01}\n"
	if err := os.WriteFile(file, []byte(head+"fleet:\n  prometheus: http://prometheus:9090\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if c, err := Load(file); err != nil || c.Fleet.Prometheus != "http://prometheus:9090" {
		t.Errorf("fleet.prometheus: %+v, %v", c, err)
	}
	if err := os.WriteFile(file, []byte(head+"fleet:\n  prometheus: prometheus:9090\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := Load(file); err == nil || !strings.Contains(err.Error(), `fleet.prometheus: "prometheus:9090" is not an http(s) URL`) {
		t.Errorf("a URL without a scheme: %v", err)
	}
}
