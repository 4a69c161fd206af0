package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	gosync "sync"
	"testing"

	"github.com/gitopsd/gitopsd/internal/config"
	"github.com/gitopsd/gitopsd/internal/testenv"
)

// lockedBuffer collects the daemon's log while it writes from several
// goroutines.
type lockedBuffer struct {
	mu  gosync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// secretFixture is a file internal/secrets made with the real sops CLI.
func secretFixture(t *testing.T, name string) string {
	t.Helper()
	p, err := filepath.Abs(filepath.Join("..", "secrets", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func readFixture(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(secretFixture(t, name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// simpleStack is one service of the test image that passes its gate by
// running for a second; extra is appended under the service.
func simpleStack(image, extra string) string {
	return fmt.Sprintf(`services:
  app:
    image: %[1]s
    pull_policy: never
    deploy:
      update_config:
        monitor: 1s
    labels:
      %[2]s: "1"
%[3]s
networks:
  default:
    labels:
      %[2]s: "1"
`, image, testenv.TestLabel, extra)
}

// TestSecretsReachTheContainerOnly: the values of a SOPS/age-encrypted
// env_file reach the container, and nothing gitopsd keeps or shows holds
// them: not the state folder (checkouts, database and its WAL), the log,
// the metrics, status, history or diff.
func TestSecretsReachTheContainerOnly(t *testing.T) {
	h := newHarness(t, nil)
	h.cfg.Secrets.AgeKeyFile = secretFixture(t, "test.agekey")
	h.cfg.Metrics = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	var logs lockedBuffer
	h.logTo = &logs
	h.stop()
	h.start() // again, with the key and the log
	name := testenv.Project(t, "sops")
	dir := "stacks/" + name + "/"
	h.repo.Commit(t, "encrypted env", map[string]string{
		dir + "compose.yaml": simpleStack(h.image, "    env_file: secrets.env\n    environment:\n      VERSION: v1"),
		dir + "secrets.env":  readFixture(t, "app.env"),
	})
	c := runDaemon(t, h)
	if err := c.Sync(context.Background(), "", false, true); err != nil {
		t.Fatalf("sync: %v", err)
	}
	env := h.env(h.containers(name)["app#1"])
	for _, want := range []string{"DB_PASSWORD=s3cr3t=with equals and spaces", "API_TOKEN=tok_9f8e7d6c5b4a", "MULTILINE=first line\nsecond line\nthird line", "VERSION=v1"} {
		if !slices.Contains(env, want) {
			t.Fatalf("container env lacks %q: %q", want, env)
		}
	}

	// diff says which variables changed, never their values: the stack's
	// link in the live view is pointed, as a new revision would point it,
	// at a copy of its folder with another encrypted file.
	link := filepath.Join(h.cfg.StateDir, "live", "stacks", name)
	changed := filepath.Join(t.TempDir(), "stacks", name) // shaped as a checkout's stack folder, which the loader requires
	if err := os.MkdirAll(changed, 0o755); err != nil {
		t.Fatal(err)
	}
	compose, err := os.ReadFile(filepath.Join(link, "compose.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	for file, content := range map[string]string{"compose.yaml": string(compose), "secrets.env": readFixture(t, "uregex.env")} {
		if err := os.WriteFile(filepath.Join(changed, file), []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.Remove(link); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(changed, link); err != nil {
		t.Fatal(err)
	}
	diffs, err := c.Diff(context.Background(), name)
	if err != nil {
		t.Fatal(err)
	}
	shown, _ := json.Marshal(diffs)
	if !strings.Contains(string(shown), "env") || !strings.Contains(string(shown), "SECRET_KEY") {
		t.Fatalf("diff does not name the changed variables: %s", shown)
	}

	status, _ := c.Status(context.Background(), "")
	history, _ := c.History(context.Background(), name, 0)
	seen := map[string]string{
		"log":     logs.String(),
		"metrics": scrape(t, h.cfg.Metrics),
		"status":  mustJSON(t, status),
		"history": mustJSON(t, history),
		"diff":    string(shown),
	}
	err = filepath.WalkDir(h.cfg.StateDir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		seen["state "+strings.TrimPrefix(p, h.cfg.StateDir)] = string(b)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, ok := seen["state /gitopsd.db"]; !ok {
		t.Fatalf("the walk did not see the database: %v", keys(seen))
	}
	for where, text := range seen {
		for _, secret := range []string{"s3cr3t", "tok_9f8e7d6c5b4a", "uregex-secret-key", "second line"} {
			if strings.Contains(text, secret) {
				t.Errorf("%s holds the secret %q", where, secret)
			}
		}
	}
	t.Logf("searched %d files and outputs (%d bytes of log) for 4 plaintexts", len(seen), len(seen["log"]))
}

// TestHostPolicyAndHostileStacks: under the strict preset a stack asking
// for privileged or a bind of / is Invalid naming the rule; a ../
// env_file, a symlink to /etc/shadow and a YAML alias bomb make their
// stacks Invalid with a clear error; the daemon carries on and the other
// stack deploys.
func TestHostPolicyAndHostileStacks(t *testing.T) {
	h := newHarness(t, nil)
	h.cfg.Policy = config.Policy{Preset: config.PresetStrict}
	h.stop()
	h.start()
	good := testenv.UniqueName(t, "good")
	bad := map[string]string{}
	for _, k := range []string{"priv", "root", "envup", "shadow", "bomb"} {
		bad[k] = testenv.UniqueName(t, k)
	}
	testenv.CleanupProjects(t, append([]string{good}, values(bad)...)...)
	bomb := "x-a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n"
	for i, c := range "bcdefghi" {
		prev := string("abcdefghi"[i])
		bomb += fmt.Sprintf("x-%c: &%c [*%s, *%s, *%s, *%s, *%s, *%s, *%s, *%s, *%s]\n", c, c, prev, prev, prev, prev, prev, prev, prev, prev, prev)
	}
	files := map[string]string{
		"stacks/" + good + "/compose.yaml":          simpleStack(h.image, ""),
		"stacks/" + bad["priv"] + "/compose.yaml":   simpleStack(h.image, "    privileged: true"),
		"stacks/" + bad["root"] + "/compose.yaml":   simpleStack(h.image, "    volumes:\n      - /:/host:ro"),
		"stacks/" + bad["envup"] + "/compose.yaml":  simpleStack(h.image, "    env_file: ../"+good+"/compose.yaml"),
		"stacks/" + bad["shadow"] + "/compose.yaml": simpleStack(h.image, "    env_file: shadow.env"),
		"stacks/" + bad["bomb"] + "/compose.yaml":   bomb + simpleStack(h.image, "    labels:\n      bomb: *i"),
	}
	h.repo.Commit(t, "a good stack among hostile ones", files)
	if err := os.Symlink("/etc/shadow", filepath.Join(h.repo.Work, "stacks", bad["shadow"], "shadow.env")); err != nil {
		t.Fatal(err)
	}
	h.repo.Commit(t, "a symlink to /etc/shadow", nil)

	err := h.reconcile()
	if err == nil {
		t.Fatal("a reconcile with invalid stacks reported no error")
	}
	if s := h.stackStatus(good); s.Sync != "Synced" {
		t.Fatalf("the good stack beside the hostile ones: %+v", s)
	}
	if len(h.containers(good)) != 1 {
		t.Fatalf("the good stack runs %v", h.containers(good))
	}
	want := map[string]string{
		"priv":   "privileged: true is not allowed on this host (policy.privileged)",
		"root":   "a bind of / (outside the allowed bind paths (none)) is not allowed on this host (policy.bind_paths)",
		"envup":  "is outside the stack folder (policy.paths_outside_stack)",
		"shadow": "stacks/" + bad["shadow"] + "/shadow.env: symlink points outside the stack folder, to /etc/shadow (policy.paths_outside_stack)",
		"bomb":   "YAML aliases expand this file to more than 50000 nodes",
	}
	for k, msg := range want {
		s := h.stackStatus(bad[k])
		if s.Sync != "Invalid" || !strings.Contains(s.Error, msg) {
			t.Errorf("stack %s: sync %s error %q; want Invalid with %q", k, s.Sync, s.Error, msg)
		}
		if n := len(h.containers(bad[k])); n != 0 {
			t.Errorf("stack %s: %d containers were created", k, n)
		}
	}
}

// scrape returns the /metrics page of the daemon listening on addr.
func scrape(t testing.TB, addr string) string {
	t.Helper()
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		t.Fatalf("scrape: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func values(m map[string]string) []string {
	var out []string
	for _, v := range m {
		out = append(out, v)
	}
	return out
}

func keys(m map[string]string) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestOnlySignedHeadsApply: with source.verify, a head signed by an allowed
// key (SSH, then OpenPGP) deploys; an unsigned head and one signed by
// another key are refused: the previous revision keeps running, status
// says why, and the metrics count it.
func TestOnlySignedHeadsApply(t *testing.T) {
	h := newHarness(t, nil)
	allowedSSH, otherSSH := testenv.NewSSHKey(t), testenv.NewSSHKey(t)
	allowedPGP, otherPGP := testenv.NewOpenPGPKey(t), testenv.NewOpenPGPKey(t)
	keys := t.TempDir()
	h.cfg.Source.Verify.AllowedSigners = filepath.Join(keys, "allowed_signers")
	h.cfg.Source.Verify.Keyring = filepath.Join(keys, "keyring.asc")
	testenv.WriteAllowedSigners(t, h.cfg.Source.Verify.AllowedSigners, allowedSSH)
	testenv.WriteKeyring(t, h.cfg.Source.Verify.Keyring, allowedPGP)
	h.cfg.Metrics = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	h.stop()
	h.start()
	name := testenv.Project(t, "signed")
	file := "stacks/" + name + "/compose.yaml"
	version := func(v string) map[string]string {
		return map[string]string{file: simpleStack(h.image, "    environment:\n      VERSION: "+v)}
	}
	c := runDaemon(t, h)
	sync := func() {
		t.Helper()
		if err := c.Sync(context.Background(), "", false, true); err != nil {
			t.Fatalf("sync: %v", err)
		}
	}
	runs := func(v string) {
		t.Helper()
		if env := h.env(h.containers(name)["app#1"]); !slices.Contains(env, "VERSION="+v) {
			t.Fatalf("the stack does not run %s: %q", v, env)
		}
	}
	source := func() (head, why string) {
		t.Helper()
		st, err := c.Status(context.Background(), "")
		if err != nil {
			t.Fatal(err)
		}
		return st.Source.Head, st.Source.Error
	}

	v1 := h.repo.CommitSigned(t, allowedSSH, "v1, ssh-signed", version("v1"))
	sync()
	runs("v1")
	if head, why := source(); head != v1 || why != "" {
		t.Fatalf("after a signed v1: head %s error %q", head, why)
	}

	refused := []struct {
		what string
		push func() string
		why  string
	}{
		{"unsigned", func() string { return h.repo.Commit(t, "v2, unsigned", version("v2")) }, "is not signed"},
		{"signed by another SSH key", func() string { return h.repo.CommitSigned(t, otherSSH, "v2, other ssh key", version("v2")) }, otherSSH.Fingerprint},
		{"signed by another OpenPGP key", func() string { return h.repo.CommitSigned(t, otherPGP, "v2, other pgp key", version("v2")) }, otherPGP.Fingerprint + " which is not in keyring"},
	}
	for i, r := range refused {
		sha := r.push()
		sync()
		runs("v1")
		head, why := source()
		if head != v1 || !strings.Contains(why, "head "+sha[:12]+" not applied") || !strings.Contains(why, r.why) {
			t.Fatalf("%s head: status head %s error %q; want v1 kept and the reason (%q)", r.what, head, why, r.why)
		}
		page := scrape(t, h.cfg.Metrics)
		if !strings.Contains(page, "gitopsd_source_head_trusted 0") || !strings.Contains(page, fmt.Sprintf("gitopsd_source_untrusted_total %d", i+1)) {
			t.Fatalf("%s head: metrics do not say so:\n%s", r.what, grepLines(page, "gitopsd_source_"))
		}
	}

	v3 := h.repo.CommitSigned(t, allowedPGP, "v3, pgp-signed", version("v3"))
	sync()
	runs("v3")
	if head, why := source(); head != v3 || why != "" {
		t.Fatalf("after an OpenPGP-signed v3: head %s error %q", head, why)
	}
	if page := scrape(t, h.cfg.Metrics); !strings.Contains(page, "gitopsd_source_head_trusted 1") {
		t.Fatalf("metrics after a trusted head:\n%s", grepLines(page, "gitopsd_source_"))
	}
	// An operator cannot roll back to a commit no allowed key signed.
	untrusted := h.repo.Git(t, "rev-parse", "HEAD~1") // signed by the other OpenPGP key
	if err := c.Rollback(context.Background(), name, untrusted, false, true); err == nil || !strings.Contains(err.Error(), "which is not in keyring") {
		t.Fatalf("rollback to an untrusted commit: %v", err)
	}
}

// grepLines keeps the lines of text that contain s.
func grepLines(text, s string) string {
	var out []string
	for _, l := range strings.Split(text, "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return strings.Join(out, "\n")
}
