package engine

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"github.com/distribution/reference"
	"github.com/moby/moby/api/types/registry"
)

// dockerHubAuthKey is the key `docker login` files Docker Hub's credentials
// under, whatever name the image uses (docker.io, index.docker.io, none).
const dockerHubAuthKey = "https://index.docker.io/v1/"

// dockerConfigFile is the subset of the docker CLI's config.json that says
// how to log in to registries.
type dockerConfigFile struct {
	Auths       map[string]dockerAuthEntry `json:"auths"`
	CredsStore  string                     `json:"credsStore"`
	CredHelpers map[string]string          `json:"credHelpers"`
}

// dockerAuthEntry is one registry under "auths": `docker login` writes
// "auth" (base64 of user:password); other tools write the fields.
type dockerAuthEntry struct {
	Auth          string `json:"auth"`
	Username      string `json:"username"`
	Password      string `json:"password"`
	IdentityToken string `json:"identitytoken"`
}

// DefaultDockerConfig is where the docker CLI reads its config.json:
// $DOCKER_CONFIG/config.json, else ~/.docker/config.json.
func DefaultDockerConfig() string {
	if dir := os.Getenv("DOCKER_CONFIG"); dir != "" {
		return filepath.Join(dir, "config.json")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		return ""
	}
	return filepath.Join(home, ".docker", "config.json")
}

// RegistryHost is the registry an image reference is pulled from, as a
// user names it: "docker.io" for Docker Hub images, else the host[:port]
// the reference starts with.
func RegistryHost(ref string) (string, error) {
	named, err := reference.ParseNormalizedNamed(ref)
	if err != nil {
		return "", fmt.Errorf("image reference %q: %w", ref, err)
	}
	return reference.Domain(named), nil
}

// authKey is the server address credentials of host are filed under, and
// that credential helpers are asked about.
func authKey(host string) string {
	if host == "docker.io" || host == "index.docker.io" {
		return dockerHubAuthKey
	}
	return host
}

// RegistryAuth reads the credentials for host from the Docker config.json
// at path ("" for DefaultDockerConfig) the way the docker CLI does: a
// credHelpers entry for the host, else credsStore, else the auths entry.
// A missing file, or no entry, is anonymous access (a zero AuthConfig).
// Errors never carry a secret.
func RegistryAuth(ctx context.Context, path, host string) (registry.AuthConfig, error) {
	if path == "" {
		path = DefaultDockerConfig()
	}
	cfg, err := readDockerConfig(path)
	if err != nil || cfg == nil {
		return registry.AuthConfig{}, err
	}
	key := authKey(host)
	if helper := cfg.helperFor(key); helper != "" {
		auth, err := helperCredentials(ctx, helper, key)
		if err != nil {
			return registry.AuthConfig{}, fmt.Errorf("credentials for %s from %s: %w", host, path, err)
		}
		return auth, nil
	}
	entry, ok := cfg.entryFor(key)
	if !ok {
		return registry.AuthConfig{}, nil
	}
	auth, err := entry.authConfig(key)
	if err != nil {
		return registry.AuthConfig{}, fmt.Errorf("credentials for %s in %s: %w", host, path, err)
	}
	return auth, nil
}

// readDockerConfig parses a config.json; a missing file is nil, no error.
func readDockerConfig(path string) (*dockerConfigFile, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read docker config: %w", err)
	}
	var cfg dockerConfigFile
	if err := json.Unmarshal(data, &cfg); err != nil {
		// A syntax error quotes the character it stumbled on, which may
		// belong to a secret: only its offset is told.
		if syn, ok := errors.AsType[*json.SyntaxError](err); ok {
			return nil, fmt.Errorf("docker config %s is not valid JSON (at byte %d)", path, syn.Offset)
		}
		return nil, fmt.Errorf("docker config %s: %w", path, err)
	}
	return &cfg, nil
}

// helperFor names the credential helper that holds key's credentials: the
// registry's own in credHelpers wins over the credsStore of every registry.
func (c *dockerConfigFile) helperFor(key string) string {
	for server, helper := range c.CredHelpers {
		if hostOf(server) == hostOf(key) {
			return helper
		}
	}
	return c.CredsStore
}

// entryFor finds key under auths, spelled as docker writes it or with a
// scheme and path around the host ("https://host", "http://host/v2/").
func (c *dockerConfigFile) entryFor(key string) (dockerAuthEntry, bool) {
	if e, ok := c.Auths[key]; ok {
		return e, true
	}
	for server, e := range c.Auths {
		if hostOf(server) == hostOf(key) {
			return e, true
		}
	}
	return dockerAuthEntry{}, false
}

// hostOf strips a scheme and a path from a server address.
func hostOf(server string) string {
	s := strings.TrimPrefix(strings.TrimPrefix(server, "https://"), "http://")
	host, _, _ := strings.Cut(s, "/")
	return host
}

func (e dockerAuthEntry) authConfig(server string) (registry.AuthConfig, error) {
	auth := registry.AuthConfig{Username: e.Username, Password: e.Password, IdentityToken: e.IdentityToken, ServerAddress: server}
	if e.Auth == "" {
		return auth, nil
	}
	decoded, err := base64.StdEncoding.DecodeString(e.Auth)
	if err != nil {
		return registry.AuthConfig{}, errors.New(`"auth" is not base64`)
	}
	user, pass, ok := strings.Cut(string(decoded), ":")
	if !ok {
		return registry.AuthConfig{}, errors.New(`"auth" is not base64 of user:password`)
	}
	auth.Username, auth.Password = user, pass
	return auth, nil
}

// helperTimeout bounds one run of a credential helper.
const helperTimeout = 30 * time.Second

// helperTokenUser is the user name a credential helper returns with an
// identity token in Secret instead of a password.
const helperTokenUser = "<token>"

// helperCredentials runs `docker-credential-<helper> get` with the server
// address on stdin, per the docker-credential-helpers protocol. A helper
// that has nothing for the server means anonymous access.
func helperCredentials(ctx context.Context, helper, server string) (registry.AuthConfig, error) {
	bin := "docker-credential-" + helper
	path, err := exec.LookPath(bin)
	if err != nil {
		return registry.AuthConfig{}, fmt.Errorf("credential helper %s is not installed (not found in PATH)", bin)
	}
	// A helper waiting for a desktop prompt must not hold up the reconcile.
	ctx, cancel := context.WithTimeout(ctx, helperTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, path, "get")
	cmd.Stdin = strings.NewReader(server)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		// Helpers print why on stdout (the protocol) or stderr; never a secret.
		msg := strings.TrimSpace(stdout.String() + " " + stderr.String())
		if strings.Contains(msg, "credentials not found") {
			return registry.AuthConfig{}, nil
		}
		return registry.AuthConfig{}, fmt.Errorf("credential helper %s: %w: %s", bin, err, msg)
	}
	var out struct{ Username, Secret string }
	if err := json.Unmarshal(stdout.Bytes(), &out); err != nil {
		return registry.AuthConfig{}, fmt.Errorf("credential helper %s: its answer is not the expected JSON", bin)
	}
	if out.Username == helperTokenUser {
		return registry.AuthConfig{IdentityToken: out.Secret, ServerAddress: server}, nil
	}
	return registry.AuthConfig{Username: out.Username, Password: out.Secret, ServerAddress: server}, nil
}
