package engine

import (
	"context"
	"encoding/base64"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/moby/moby/api/types/registry"
)

func writeDockerConfig(t *testing.T, content string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "config.json")
	if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

func basicAuth(user, pass string) string {
	return base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))
}

func TestRegistryAuthReadsAuthsAsDockerLoginWritesThem(t *testing.T) {
	path := writeDockerConfig(t, `{
  "auths": {
    "https://index.docker.io/v1/": {"auth": "`+basicAuth("hubuser", "hub:pass")+`"},
    "127.0.0.1:5000": {"auth": "`+basicAuth("local", "s3cret")+`"},
    "https://registry.example.com": {"username": "fields", "password": "pw"},
    "http://plain.example.com:8080/v2/": {"identitytoken": "tok"}
  }
}`)
	ctx := context.Background()
	for _, tc := range []struct {
		ref  string
		want registry.AuthConfig
	}{
		{"nginx:1", registry.AuthConfig{Username: "hubuser", Password: "hub:pass", ServerAddress: "https://index.docker.io/v1/"}},
		{"docker.io/library/nginx", registry.AuthConfig{Username: "hubuser", Password: "hub:pass", ServerAddress: "https://index.docker.io/v1/"}},
		{"127.0.0.1:5000/app:v1", registry.AuthConfig{Username: "local", Password: "s3cret", ServerAddress: "127.0.0.1:5000"}},
		{"registry.example.com/team/app", registry.AuthConfig{Username: "fields", Password: "pw", ServerAddress: "registry.example.com"}},
		{"plain.example.com:8080/app@sha256:" + strings.Repeat("a", 64), registry.AuthConfig{IdentityToken: "tok", ServerAddress: "plain.example.com:8080"}},
		{"127.0.0.1:5001/app:v1", registry.AuthConfig{}}, // another port is another registry
		{"ghcr.io/x/y:1", registry.AuthConfig{}},
	} {
		host, err := RegistryHost(tc.ref)
		if err != nil {
			t.Fatalf("%s: %v", tc.ref, err)
		}
		got, err := RegistryAuth(ctx, path, host)
		if err != nil || got != tc.want {
			t.Errorf("%s (registry %s): got %+v, %v; want %+v", tc.ref, host, got, err, tc.want)
		}
	}
}

func TestRegistryAuthWithoutConfigIsAnonymous(t *testing.T) {
	got, err := RegistryAuth(context.Background(), filepath.Join(t.TempDir(), "absent.json"), "127.0.0.1:5000")
	if err != nil || got != (registry.AuthConfig{}) {
		t.Fatalf("missing file: %+v, %v; want anonymous", got, err)
	}
}

func TestRegistryAuthErrorsKeepSecretsOut(t *testing.T) {
	ctx := context.Background()
	broken := writeDockerConfig(t, `{"auths": {"r.example.com": {"auth": "c2VjcmV0"}}, "x": topsecret}`)
	if _, err := RegistryAuth(ctx, broken, "r.example.com"); err == nil || strings.Contains(err.Error(), "topsecret") || strings.Contains(err.Error(), "'t'") {
		t.Fatalf("invalid JSON: %v; want an error without the file's content", err)
	}
	notBase64 := writeDockerConfig(t, `{"auths": {"r.example.com": {"auth": "%%secret%%"}}}`)
	if _, err := RegistryAuth(ctx, notBase64, "r.example.com"); err == nil || strings.Contains(err.Error(), "secret") {
		t.Fatalf("auth not base64: %v; want an error without the value", err)
	}
	noColon := writeDockerConfig(t, `{"auths": {"r.example.com": {"auth": "`+base64.StdEncoding.EncodeToString([]byte("justasecret"))+`"}}}`)
	if _, err := RegistryAuth(ctx, noColon, "r.example.com"); err == nil || strings.Contains(err.Error(), "justasecret") {
		t.Fatalf("auth without a colon: %v; want an error without the value", err)
	}
}

// fakeHelper installs docker-credential-<name> in a folder put first on
// PATH: a script that logs the server it was asked about and answers with
// reply for registry.example.com, and "not found" for anything else.
func fakeHelper(t *testing.T, name, reply string) (asked func() string) {
	t.Helper()
	dir := t.TempDir()
	log := filepath.Join(dir, "asked")
	script := `#!/bin/sh
[ "$1" = get ] || exit 2
read -r server || true
printf '%s' "$server" > '` + log + `'
case "$server" in
  registry.example.com) printf '%s' '` + reply + `' ;;
  *) echo "credentials not found in native keychain"; exit 1 ;;
esac
`
	if err := os.WriteFile(filepath.Join(dir, "docker-credential-"+name), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	return func() string {
		b, _ := os.ReadFile(log)
		return string(b)
	}
}

func TestRegistryAuthAsksCredentialHelpers(t *testing.T) {
	asked := fakeHelper(t, "fake", `{"ServerURL":"registry.example.com","Username":"helperuser","Secret":"helperpass"}`)
	fakeHelper(t, "tokens", `{"ServerURL":"registry.example.com","Username":"<token>","Secret":"idtoken"}`)
	ctx := context.Background()

	// credHelpers names the helper of one registry; the file's auths entry
	// for it is not used.
	path := writeDockerConfig(t, `{"auths": {"registry.example.com": {"auth": "`+basicAuth("file", "file")+`"}},
		"credHelpers": {"registry.example.com": "fake"}}`)
	got, err := RegistryAuth(ctx, path, "registry.example.com")
	want := registry.AuthConfig{Username: "helperuser", Password: "helperpass", ServerAddress: "registry.example.com"}
	if err != nil || got != want || asked() != "registry.example.com" {
		t.Fatalf("credHelpers: %+v, %v (asked %q); want %+v", got, err, asked(), want)
	}
	// credsStore serves every registry; one it does not know is anonymous.
	path = writeDockerConfig(t, `{"credsStore": "tokens"}`)
	got, err = RegistryAuth(ctx, path, "registry.example.com")
	if err != nil || got != (registry.AuthConfig{IdentityToken: "idtoken", ServerAddress: "registry.example.com"}) {
		t.Fatalf("credsStore with an identity token: %+v, %v", got, err)
	}
	if got, err = RegistryAuth(ctx, path, "other.example.com"); err != nil || got != (registry.AuthConfig{}) {
		t.Fatalf("credsStore without credentials for the registry: %+v, %v; want anonymous", got, err)
	}
	// A helper that is not installed is named.
	path = writeDockerConfig(t, `{"credHelpers": {"registry.example.com": "absent"}}`)
	if _, err = RegistryAuth(ctx, path, "registry.example.com"); err == nil || !strings.Contains(err.Error(), "docker-credential-absent") {
		t.Fatalf("missing helper: %v; want an error naming docker-credential-absent", err)
	}
}

func TestDefaultDockerConfigFollowsDockerConfigVariable(t *testing.T) {
	t.Setenv("DOCKER_CONFIG", "/etc/dockercfg")
	if got := DefaultDockerConfig(); got != "/etc/dockercfg/config.json" {
		t.Fatalf("with DOCKER_CONFIG: %s", got)
	}
	t.Setenv("DOCKER_CONFIG", "")
	t.Setenv("HOME", "/home/ops")
	if got := DefaultDockerConfig(); got != "/home/ops/.docker/config.json" {
		t.Fatalf("without DOCKER_CONFIG: %s", got)
	}
}
