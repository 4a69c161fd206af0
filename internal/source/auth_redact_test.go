package source

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
	"golang.org/x/crypto/ssh"
)

// TestSSHAuth checks the credentials built for SSH without a server: the key
// is loaded for the URL's user and the host key is checked against
// known_hosts, never skipped.
func TestSSHAuth(t *testing.T) {
	dir := t.TempDir()
	_, clientKey, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	block, err := ssh.MarshalPrivateKey(clientKey, "")
	if err != nil {
		t.Fatal(err)
	}
	keyPath := filepath.Join(dir, "deploy_key")
	if err := os.WriteFile(keyPath, pem.EncodeToMemory(block), 0o600); err != nil {
		t.Fatal(err)
	}
	hostPub, _, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	hostKey, err := ssh.NewPublicKey(hostPub)
	if err != nil {
		t.Fatal(err)
	}
	khPath := filepath.Join(dir, "known_hosts")
	if err := os.WriteFile(khPath, []byte("[git.example.com]:2222 "+string(ssh.MarshalAuthorizedKey(hostKey))), 0o600); err != nil {
		t.Fatal(err)
	}
	otherPub, _, _ := ed25519.GenerateKey(rand.Reader)
	otherKey, _ := ssh.NewPublicKey(otherPub)
	addr := &net.TCPAddr{IP: net.IPv4(192, 0, 2, 1), Port: 2222}

	for _, url := range []string{"ssh://deploy@git.example.com:2222/ops/fleet.git", "ssh://git.example.com:2222/ops/fleet.git"} {
		s := newSource(t, Options{URL: url, Auth: Auth{SSHKey: keyPath, KnownHosts: khPath}})
		am, _, err := s.auth()
		if err != nil {
			t.Fatalf("%s: auth: %v", url, err)
		}
		keys, ok := am.(*gitssh.PublicKeys)
		if !ok {
			t.Fatalf("%s: auth is %T", url, am)
		}
		wantUser := "deploy"
		if !strings.Contains(url, "deploy@") {
			wantUser = "git"
		}
		if keys.User != wantUser {
			t.Errorf("%s: user = %q, want %q", url, keys.User, wantUser)
		}
		cfg, err := keys.ClientConfig()
		if err != nil {
			t.Fatal(err)
		}
		if err := cfg.HostKeyCallback("git.example.com:2222", addr, hostKey); err != nil {
			t.Errorf("%s: known host key rejected: %v", url, err)
		}
		if err := cfg.HostKeyCallback("git.example.com:2222", addr, otherKey); err == nil {
			t.Errorf("%s: a different host key was accepted", url)
		}
		if err := cfg.HostKeyCallback("other.example.com:22", addr, hostKey); err == nil {
			t.Errorf("%s: an unknown host was accepted", url)
		}
		if !slices.Contains(cfg.HostKeyAlgorithms, ssh.KeyAlgoED25519) {
			t.Errorf("%s: host key algorithms %v do not offer the type on file", url, cfg.HostKeyAlgorithms)
		}
	}

	s := newSource(t, Options{URL: "git@git.example.com:ops/fleet.git", Auth: Auth{SSHKey: keyPath, KnownHosts: filepath.Join(dir, "missing")}})
	if _, err := s.Fetch(context.Background()); err == nil || !strings.Contains(err.Error(), "source.auth.known_hosts") {
		t.Errorf("Fetch with a missing known_hosts: %v", err)
	}
	s = newSource(t, Options{URL: "git@git.example.com:ops/fleet.git", Auth: Auth{SSHKey: filepath.Join(dir, "missing"), KnownHosts: khPath}})
	if _, err := s.Fetch(context.Background()); err == nil || !strings.Contains(err.Error(), "source.auth.ssh_key") {
		t.Errorf("Fetch with a missing key: %v", err)
	}
}

func TestRedact(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"https://git.example.com/ops/fleet.git", "https://git.example.com/ops/fleet.git"},
		{"https://user:secret@git.example.com/ops/fleet.git", "https://user:REDACTED@git.example.com/ops/fleet.git"},
		{"https://ghp_token123@github.com/ops/fleet.git", "https://REDACTED@github.com/ops/fleet.git"},
		{"http://x-access-token:p%40ss@127.0.0.1:8080/r", "http://x-access-token:REDACTED@127.0.0.1:8080/r"},
		{"https://u:p@host/path?q=a@b", "https://u:REDACTED@host/path?q=a@b"},
		{"https://u:pa@ss@host/x", "https://u:REDACTED@host/x"},
		{"https://u:s3cr%zzet@host/x", "https://u:REDACTED@host/x"},
		{"ssh://git@example.com/ops/fleet.git", "ssh://git@example.com/ops/fleet.git"},
		{"ssh://git:pw@example.com/ops/fleet.git", "ssh://git:REDACTED@example.com/ops/fleet.git"},
		{"git@example.com:ops/fleet.git", "git@example.com:ops/fleet.git"},
		{"/srv/git/fleet.git", "/srv/git/fleet.git"},
		{"file:///srv/git/fleet.git", "file:///srv/git/fleet.git"},
		{"", ""},
	} {
		if got := Redact(tc.in); got != tc.want {
			t.Errorf("Redact(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestScrub(t *testing.T) {
	inner := context.Canceled
	err := scrub(fmt.Errorf("dial https://u:hunter2@host: %w", inner), []string{"hunter2", ""})
	if strings.Contains(err.Error(), "hunter2") {
		t.Errorf("scrub left the secret: %v", err)
	}
	if !errors.Is(err, context.Canceled) {
		t.Error("scrubbed error no longer unwraps")
	}
	plain := errors.New("nothing secret")
	if scrub(plain, []string{"hunter2"}) != plain {
		t.Error("scrub replaced an error that had nothing to hide")
	}
}

func TestScrubOneLine(t *testing.T) {
	err := scrub(errors.New("authentication required: denied\n (hint)"), nil)
	if got := err.Error(); got != "authentication required: denied (hint)" {
		t.Errorf("scrub = %q, want one line", got)
	}
}
