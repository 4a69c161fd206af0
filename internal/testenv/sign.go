package testenv

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// SigningKey is a key made by the real ssh-keygen or gpg that signs commits
// through the real git (GitRepo.CommitSigned), so tests see exactly the
// signatures a user's git writes.
type SigningKey struct {
	Kind string // "ssh" or "openpgp"

	// Fingerprint is how the key's own tool names it: "SHA256:..." as
	// `ssh-keygen -l` prints it, or the 40 hex digits gpg prints.
	Fingerprint string

	// PublicKey is the public key as its tool exports it: an authorized_keys
	// line ("ssh-ed25519 AAAA...") or an armored OpenPGP key block.
	PublicKey string

	privateKey string // ssh: path of the private key file
	gnupgHome  string // openpgp: the key's private GNUPGHOME
}

// TestIdentity is the committer of every GitRepo commit and the user ID of
// every NewOpenPGPKey key.
const TestIdentity = "gitopsd test <test@gitopsd.invalid>"

// TestEmail is the e-mail address of TestIdentity, the principal
// WriteAllowedSigners lists keys under.
const TestEmail = "test@gitopsd.invalid"

// NewSSHKey generates an ed25519 key without passphrase with ssh-keygen.
func NewSSHKey(t testing.TB) *SigningKey {
	t.Helper()
	NeedTool(t, "ssh-keygen", "openssh-client")
	path := filepath.Join(t.TempDir(), "id_ed25519")
	runTool(t, nil, "ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "", "-f", path)
	pub, err := os.ReadFile(path + ".pub")
	if err != nil {
		t.Fatalf("read ssh public key: %v", err)
	}
	// "256 SHA256:... comment (ED25519)"
	fields := strings.Fields(runTool(t, nil, "ssh-keygen", "-l", "-E", "sha256", "-f", path+".pub"))
	if len(fields) < 2 || !strings.HasPrefix(fields[1], "SHA256:") {
		t.Fatalf("ssh-keygen -l: unexpected output %q", strings.Join(fields, " "))
	}
	return &SigningKey{
		Kind:        "ssh",
		Fingerprint: fields[1],
		PublicKey:   strings.TrimSpace(string(pub)),
		privateKey:  path,
	}
}

// NewOpenPGPKey generates an ed25519 signing key for TestIdentity that
// never expires, without passphrase, in a GNUPGHOME of its own. The
// gpg-agent that gpg starts for it is stopped after every use of the key.
func NewOpenPGPKey(t testing.TB) *SigningKey {
	t.Helper()
	for _, tool := range []string{"gpg", "gpgconf"} {
		NeedTool(t, tool, "gnupg")
	}
	home := shortTempDir(t)
	k := &SigningKey{Kind: "openpgp", gnupgHome: home}
	k.GPG(t, "--passphrase", "", "--quick-gen-key", TestIdentity, "ed25519", "sign", "never")
	for _, line := range strings.Split(k.GPG(t, "--with-colons", "--list-keys"), "\n") {
		// fpr:::::::::<fingerprint>: — the first one is the primary key's.
		if f := strings.Split(line, ":"); f[0] == "fpr" && len(f) > 9 {
			k.Fingerprint = f[9]
			break
		}
	}
	if k.Fingerprint == "" {
		t.Fatal("gpg --list-keys: no fingerprint for the new key")
	}
	k.export(t)
	return k
}

// GPG runs gpg in batch mode in the key's GNUPGHOME (to change the key:
// --quick-set-expire, --quick-add-uid, ...), refreshes PublicKey, and
// returns gpg's stdout.
func (k *SigningKey) GPG(t testing.TB, args ...string) string {
	t.Helper()
	if k.Kind != "openpgp" {
		t.Fatalf("GPG on a %s key", k.Kind)
	}
	out := runTool(t, k.env(), "gpg", append([]string{"--batch", "--pinentry-mode", "loopback"}, args...)...)
	if k.Fingerprint != "" {
		k.export(t)
	}
	k.stopAgent(t)
	return out
}

// export sets PublicKey to the key as gpg exports it now.
func (k *SigningKey) export(t testing.TB) {
	t.Helper()
	k.PublicKey = runTool(t, k.env(), "gpg", "--batch", "--armor", "--export", k.Fingerprint)
}

// Revoke revokes the OpenPGP key with the revocation certificate gpg made
// along with it; PublicKey then carries the revocation.
func (k *SigningKey) Revoke(t testing.TB) {
	t.Helper()
	cert, err := os.ReadFile(filepath.Join(k.gnupgHome, "openpgp-revocs.d", k.Fingerprint+".rev"))
	if err != nil {
		t.Fatalf("read revocation certificate: %v", err)
	}
	// gpg guards the stored certificate against accidental import with a
	// leading ':' on its armor line.
	cert = bytes.Replace(cert, []byte(":-----BEGIN PGP PUBLIC KEY BLOCK-----"), []byte("-----BEGIN PGP PUBLIC KEY BLOCK-----"), 1)
	p := filepath.Join(t.TempDir(), "revoke.asc")
	if err := os.WriteFile(p, cert, 0o600); err != nil {
		t.Fatalf("write revocation certificate: %v", err)
	}
	k.GPG(t, "--import", p)
}

// SSHSign signs data with the SSH key as `ssh-keygen -Y sign -n
// namespace` does and returns the armored signature: git signs commits in
// namespace "git", so other namespaces make signatures git would not.
func (k *SigningKey) SSHSign(t testing.TB, namespace string, data []byte) string {
	t.Helper()
	if k.Kind != "ssh" {
		t.Fatalf("SSHSign with a %s key", k.Kind)
	}
	cmd := exec.Command("ssh-keygen", "-q", "-Y", "sign", "-n", namespace, "-f", k.privateKey)
	cmd.Stdin = bytes.NewReader(data)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("ssh-keygen -Y sign: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String()
}

// AllowedSignersLine is the key's line for an allowed_signers file, with
// options (such as `namespaces="git"`) joined by commas.
func (k *SigningKey) AllowedSignersLine(principal string, options ...string) string {
	if len(options) == 0 {
		return principal + " " + k.PublicKey
	}
	return principal + " " + strings.Join(options, ",") + " " + k.PublicKey
}

// ArmoredPublicKey is the armored OpenPGP public key block, for a keyring
// file.
func (k *SigningKey) ArmoredPublicKey() string {
	return k.PublicKey
}

// WriteAllowedSigners writes an allowed_signers file at path listing the
// SSH keys under TestEmail.
func WriteAllowedSigners(t testing.TB, path string, keys ...*SigningKey) {
	t.Helper()
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k.AllowedSignersLine(TestEmail) + "\n")
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatalf("write allowed_signers: %v", err)
	}
}

// WriteKeyring writes the OpenPGP keys' armored public keys to path, one
// block after another.
func WriteKeyring(t testing.TB, path string, keys ...*SigningKey) {
	t.Helper()
	var b strings.Builder
	for _, k := range keys {
		b.WriteString(k.ArmoredPublicKey())
	}
	if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
		t.Fatalf("write keyring: %v", err)
	}
}

// CommitSigned is Commit with the commit signed by key through git's own
// signing (`git commit -S`).
func (r *GitRepo) CommitSigned(t testing.TB, key *SigningKey, msg string, files map[string]string, remove ...string) string {
	t.Helper()
	sha := r.commit(t, key, msg, files, remove)
	key.stopAgent(t)
	return sha
}

// gitConfig is the git -c options that make `git commit -S` sign with k.
func (k *SigningKey) gitConfig() []string {
	switch k.Kind {
	case "ssh":
		return []string{"-c", "gpg.format=ssh", "-c", "user.signingkey=" + k.privateKey}
	default:
		return []string{"-c", "gpg.format=openpgp", "-c", "user.signingkey=" + k.Fingerprint}
	}
}

// env is the environment a gpg run for k needs; none for SSH keys.
func (k *SigningKey) env() []string {
	if k.gnupgHome == "" {
		return nil
	}
	return []string{"GNUPGHOME=" + k.gnupgHome}
}

// shortTempDir makes a GNUPGHOME removed at the end of the test. gpg-agent
// puts its sockets there when /run/user/<uid> is missing, and a socket
// path may not exceed about 100 bytes, which t.TempDir() paths can.
func shortTempDir(t testing.TB) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "gpg")
	if err == nil && len(dir) > 60 {
		os.Remove(dir)
		dir, err = os.MkdirTemp("/tmp", "gpg")
	}
	if err != nil {
		t.Fatalf("create GNUPGHOME: %v", err)
	}
	t.Cleanup(func() {
		// In case a failed gpg or git run left the agent up.
		cmd := exec.Command("gpgconf", "--kill", "all")
		cmd.Env = append(os.Environ(), "GNUPGHOME="+dir)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Logf("stop gpg-agent: %v: %s", err, out)
		}
		if err := os.RemoveAll(dir); err != nil {
			t.Logf("remove GNUPGHOME: %v", err)
		}
	})
	return dir
}

// stopAgent stops the gpg-agent gpg started for an OpenPGP key; gpg starts
// it again when needed. Stopping it after every use, not at cleanup, is
// what keeps agents from outliving fuzz workers, which are killed without
// running cleanups.
func (k *SigningKey) stopAgent(t testing.TB) {
	t.Helper()
	if k.gnupgHome == "" {
		return
	}
	cmd := exec.Command("gpgconf", "--kill", "all")
	cmd.Env = append(os.Environ(), k.env()...)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("stop gpg-agent: %v: %s", err, out)
	}
}

// runTool runs a tool with env added to the caller's environment and returns
// its stdout; it fails the test with stderr on error.
func runTool(t testing.TB, env []string, name string, args ...string) string {
	t.Helper()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout = &stdout
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return stdout.String()
}
