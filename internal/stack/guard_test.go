package stack

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/gitopsd/gitopsd/internal/policy"
	"github.com/gitopsd/gitopsd/internal/secrets"
)

const plainService = "services:\n  web:\n    image: example/web:1\n"

// loadErr loads stack name of dir for h and returns its *Error, failing
// the test when it loads or fails otherwise.
func loadErr(t *testing.T, dir, name string, h Host) *Error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := Load(ctx, dir, name, h)
	if err == nil {
		t.Fatalf("stack %s loaded (%v); want an error", name, st.Project.ServiceNames())
	}
	var e *Error
	if !errors.As(err, &e) {
		t.Fatalf("stack %s: %T %v; want a *stack.Error", name, err, err)
	}
	if e.Stack != name {
		t.Fatalf("error names stack %q, want %q", e.Stack, name)
	}
	return e
}

func TestPathsOutsideTheStackFolderAreRefused(t *testing.T) {
	dir := repo(t, map[string]string{
		"common.env":                    "A=1\n",
		"stacks/envup/compose.yaml":     "services:\n  web:\n    image: x\n    env_file: ../../common.env\n",
		"stacks/envabs/compose.yaml":    "services:\n  web:\n    image: x\n    env_file: /etc/hostname\n",
		"stacks/include/compose.yaml":   "include:\n  - ../other/compose.yaml\nservices:\n  web:\n    image: x\n",
		"stacks/extends/compose.yaml":   "services:\n  web:\n    extends:\n      file: /etc/gitopsd-none.yaml\n      service: base\n",
		"stacks/secret/compose.yaml":    "services:\n  web:\n    image: x\nsecrets:\n  s:\n    file: ../../common.env\n",
		"stacks/other/compose.yaml":     plainService,
		"stacks/inside/compose.yaml":    "services:\n  web:\n    image: x\n    env_file: conf/app.env\n",
		"stacks/inside/conf/app.env":    "A=2\n",
		"stacks/linked/compose.yaml":    "services:\n  web:\n    image: x\n    env_file: secrets.env\n",
		"stacks/linkedok/compose.yaml":  "services:\n  web:\n    image: x\n    env_file: local.env\n",
		"stacks/linkedok/real/app.env":  "A=3\n",
		"stacks/composeln/README":       "the compose file is a link",
		"stacks/dangling/compose.yaml":  plainService,
		"stacks/dangling/sub/.keep":     "",
		"stacks/inside/.env":            "B=1\n",
		"stacks/include/other.yaml":     "services: {}\n",
		"stacks/envup/.env":             "",
		"stacks/linkedok/compose.x.yml": "",
	})
	link := func(target, name string) {
		if err := os.Symlink(target, filepath.Join(dir, filepath.FromSlash(name))); err != nil {
			t.Fatal(err)
		}
	}
	link("/etc/shadow", "stacks/linked/secrets.env")
	link("real/app.env", "stacks/linkedok/local.env")
	link("/etc/hostname", "stacks/composeln/compose.yaml")
	link("../../../../../etc/passwd", "stacks/dangling/sub/x")

	cases := []struct{ stack, want string }{
		{"envup", "services.web.env_file.0: common.env is outside the stack folder (policy.paths_outside_stack)"},
		{"envabs", "/etc/hostname is outside the stack folder"},
		{"include", "../other/compose.yaml is outside the stack folder"},
		{"extends", "/etc/gitopsd-none.yaml is outside the stack folder"},
		{"secret", "secrets.s.file: common.env is outside the stack folder"},
		{"linked", "symlink points outside the stack folder, to /etc/shadow"},
		{"composeln", "symlink points outside the stack folder, to /etc/hostname"},
		{"dangling", "symlink points outside the stack folder"},
	}
	for _, c := range cases {
		e := loadErr(t, dir, c.stack, host)
		if !strings.Contains(e.Error(), c.want) {
			t.Errorf("stack %s: %q; want it to contain %q", c.stack, e.Error(), c.want)
		}
	}
	if e := loadErr(t, dir, "linked", host); e.File != "stacks/linked/secrets.env" {
		t.Errorf("the symlink error names %q, want the link stacks/linked/secrets.env", e.File)
	}
	if e := loadErr(t, dir, "envup", host); e.File != "stacks/envup/compose.yaml" || e.Line != 4 {
		t.Errorf("the env_file error points at %s:%d, want stacks/envup/compose.yaml:4", e.File, e.Line)
	}

	// Inside the folder, also through a link that stays inside, all loads.
	for _, name := range []string{"inside", "linkedok"} {
		if _, err := Load(context.Background(), dir, name, host); err != nil {
			t.Errorf("stack %s: %v", name, err)
		}
	}

	// The policy can allow what leaves the folder.
	yes := true
	open := policy.Resolve(policy.Settings{PathsOutsideStack: &yes})
	allowed := Host{Name: host.Name, Policy: &open}
	st, err := Load(context.Background(), dir, "envup", allowed)
	if err != nil {
		t.Fatalf("envup with paths_outside_stack: %v", err)
	}
	if got := st.Project.Services["web"].Environment["A"]; got == nil || *got != "1" {
		t.Fatalf("envup with paths_outside_stack: A=%v, want 1", got)
	}
}

func TestOversizedFilesAreRefused(t *testing.T) {
	big := "# " + strings.Repeat("x", MaxFileBytes) + "\n" + plainService
	dir := repo(t, map[string]string{
		"stacks/bigcompose/compose.yaml": big,
		"stacks/bigenv/compose.yaml":     "services:\n  web:\n    image: x\n    env_file: big.env\n",
		"stacks/bigenv/big.env":          "A=" + strings.Repeat("y", MaxFileBytes) + "\n",
		"stacks/bigdotenv/compose.yaml":  plainService,
		"stacks/bigdotenv/.env":          "A=" + strings.Repeat("y", MaxFileBytes) + "\n",
	})
	for _, c := range []struct{ stack, file string }{
		{"bigcompose", "stacks/bigcompose/compose.yaml"},
		{"bigenv", "stacks/bigenv/big.env"},
		{"bigdotenv", "stacks/bigdotenv/.env"},
	} {
		e := loadErr(t, dir, c.stack, host)
		if e.File != c.file || !strings.Contains(e.Msg, "over the limit of 1048576") {
			t.Errorf("stack %s: %q; want the size limit named on %s", c.stack, e.Error(), c.file)
		}
	}
}

// TestAliasBombIsBounded: a "billion laughs" compose file is an error,
// found without expanding it: the loader's allocations stay far below what
// the expansion would need (9^9 strings).
func TestAliasBombIsBounded(t *testing.T) {
	bomb := `x-a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
x-b: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
x-c: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
x-d: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
x-e: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
x-f: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
x-g: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
x-h: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
x-i: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
services:
  web:
    image: x
    labels:
      bomb: *i
`
	dir := repo(t, map[string]string{"stacks/bomb/compose.yaml": bomb, "stacks/good/compose.yaml": plainService})
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	e := loadErr(t, dir, "bomb", host)
	runtime.ReadMemStats(&after)
	if !strings.Contains(e.Error(), "stacks/bomb/compose.yaml") || !strings.Contains(e.Msg, "alias") {
		t.Fatalf("alias bomb: %q; want an error naming the file and the aliasing", e.Error())
	}
	allocated := after.TotalAlloc - before.TotalAlloc
	t.Logf("alias bomb refused after allocating %d MiB: %s", allocated>>20, e.Error())
	if allocated > 256<<20 {
		t.Fatalf("the loader allocated %d MiB on an alias bomb", allocated>>20)
	}
	res := LoadAll(context.Background(), dir, host)
	if len(res.Stacks) != 1 || res.Stacks[0].Name != "good" || res.Invalid["bomb"] == nil {
		t.Fatalf("beside the bomb: stacks %v invalid %v", res.Stacks, res.Invalid)
	}
}

func TestHostPolicyJudgesTargetedStacksOnly(t *testing.T) {
	dir := repo(t, map[string]string{
		"stacks/priv/compose.yaml": "services:\n  web:\n    image: x\n    privileged: true\n",
		"stacks/root/compose.yaml": "services:\n  web:\n    image: x\n    volumes:\n      - /:/host\n",
		"stacks/elsewhere/compose.yaml": "services:\n  web:\n    image: x\n    privileged: true\n" +
			"x-gitopsd:\n  targets:\n    hosts: [other-*]\n",
		"stacks/fine/compose.yaml": "services:\n  web:\n    image: x\n    volumes:\n      - ./conf:/conf\n      - data:/data\nvolumes:\n  data: {}\n",
	})
	strict := policy.Resolve(policy.Settings{Preset: policy.PresetStrict})
	h := Host{Name: host.Name, Labels: host.Labels, Policy: &strict}
	res := LoadAll(context.Background(), dir, h)
	if len(res.Stacks) != 1 || res.Stacks[0].Name != "fine" {
		t.Fatalf("stacks %v; want only fine (invalid: %v)", res.Stacks, res.Invalid)
	}
	if len(res.Untargeted) != 1 || res.Untargeted[0] != "elsewhere" {
		t.Fatalf("untargeted %v; a stack for other hosts must not be judged by this host's policy", res.Untargeted)
	}
	want := map[string]string{
		"priv": "stacks/priv/compose.yaml:4: services.web.privileged: service web: privileged: true is not allowed on this host (policy.privileged)",
		"root": "stacks/root/compose.yaml:4: services.web.volumes: service web: a bind of / (outside the allowed bind paths (none)) is not allowed on this host (policy.bind_paths)",
	}
	for name, msg := range want {
		if err := res.Invalid[name]; err == nil || err.Error() != msg {
			t.Errorf("stack %s: %v\nwant %s", name, err, msg)
		}
	}
}

func TestLoaderPanicIsAnError(t *testing.T) {
	// Found by FuzzLoad: a key named like compose's "refers to undefined"
	// message made the error locator index a missing match.
	dir := repo(t, map[string]string{"stacks/s/compose.yaml": "services:\n  web:\n    image: x\n    \"refers to undefined network x:\": 1\n"})
	e := loadErr(t, dir, "s", host)
	if strings.Contains(e.Msg, "the loader failed") || !strings.Contains(e.Msg, "not allowed") {
		t.Fatalf("a schema error was not reported as one: %v", e)
	}
}

// sopsFixture reads a file the internal/secrets tests made with the real
// sops CLI.
func sopsFixture(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("..", "secrets", "testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestSOPSEnvFileIsDecryptedInMemory(t *testing.T) {
	encrypted := sopsFixture(t, "app.env")
	dir := repo(t, map[string]string{
		"stacks/app/compose.yaml": "services:\n  web:\n    image: x\n    env_file: [plain.env, secrets.env]\n    environment:\n      PORT: \"8080\"\n",
		"stacks/app/plain.env":    "DB_HOST=from-plain\nOTHER=plain\n",
		"stacks/app/secrets.env":  encrypted,
		"stacks/away/compose.yaml": "services:\n  web:\n    image: x\n    env_file: secrets.env\n" +
			"x-gitopsd:\n  targets:\n    hosts: [other-*]\n",
		"stacks/away/secrets.env": encrypted,
	})
	ids, err := secrets.LoadIdentities(filepath.Join("..", "secrets", "testdata", "test.agekey"))
	if err != nil {
		t.Fatal(err)
	}
	h := Host{Name: host.Name, Identities: ids}
	st, err := Load(context.Background(), dir, "app", h)
	if err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]string{
		"DB_PASSWORD": "s3cr3t=with equals and spaces", // from the encrypted file
		"MULTILINE":   "first line\nsecond line\nthird line",
		"DB_HOST":     "db.internal", // the encrypted file wins over the plain one
		"OTHER":       "plain",       // the plain file still applies
		"PORT":        "8080",        // environment: wins over both
	} {
		if got := envOf(t, st, "web", k); got != want {
			t.Errorf("%s=%q, want %q", k, got, want)
		}
	}
	if files := st.Project.Services["web"].EnvFiles; len(files) != 0 {
		t.Errorf("env files left on the service: %v", files)
	}
	if st2, err := Load(context.Background(), dir, "app", h); err != nil {
		t.Fatal(err)
	} else if a, b := mustHash(t, st, "web"), mustHash(t, st2, "web"); a != b {
		t.Errorf("the config hash changes from load to load: %s, %s", a, b)
	}

	// Without a key the stack is Invalid, naming the file and the setting;
	// a stack for other hosts is not asked for a key.
	res := LoadAll(context.Background(), dir, host)
	e, ok := res.Invalid["app"].(*Error)
	if !ok || e.File != "stacks/app/compose.yaml" || e.Line != 4 ||
		!strings.Contains(e.Msg, "secrets.env is SOPS-encrypted and this host has no age key to decrypt it (secrets.age_key_file)") {
		t.Fatalf("app without a key: %v", res.Invalid["app"])
	}
	if len(res.Untargeted) != 1 || res.Untargeted[0] != "away" {
		t.Fatalf("untargeted %v invalid %v", res.Untargeted, res.Invalid)
	}
	// Judged offline without the key (gitopsd validate), the encrypted
	// file is left out unread.
	st, err = Load(context.Background(), dir, "app", Host{Name: host.Name, SkipSecrets: true})
	if err != nil {
		t.Fatalf("load with SkipSecrets: %v", err)
	}
	if got := envOf(t, st, "web", "DB_HOST"); got != "from-plain" || envOf(t, st, "web", "DB_PASSWORD") != "" {
		t.Fatalf("with SkipSecrets: DB_HOST=%q DB_PASSWORD=%q; want the plain file only", got, envOf(t, st, "web", "DB_PASSWORD"))
	}

	// A tampered file is refused, and no error quotes a secret.
	tampered := strings.Replace(encrypted, "DB_PASSWORD=ENC[AES256_GCM,data:rv7", "DB_PASSWORD=ENC[AES256_GCM,data:xx7", 1)
	if err := os.WriteFile(filepath.Join(dir, "stacks", "app", "secrets.env"), []byte(tampered), 0o644); err != nil {
		t.Fatal(err)
	}
	e = loadErr(t, dir, "app", h)
	if !strings.Contains(e.Msg, "decrypt secrets.env") {
		t.Fatalf("tampered file: %v", e)
	}
	for _, secret := range []string{"s3cr3t", "tok_9f8e7d6c5b4a", "db.internal"} {
		if strings.Contains(e.Error(), secret) {
			t.Fatalf("the error quotes a secret: %v", e)
		}
	}
}

func mustHash(t *testing.T, st *Stack, service string) string {
	t.Helper()
	h, err := ServiceHash(st.Project.Services[service])
	if err != nil {
		t.Fatal(err)
	}
	return h
}

func TestCacheLoadsACheckoutOnce(t *testing.T) {
	root := repo(t, map[string]string{
		"checkouts/a/stacks/web/compose.yaml": plainService,
		"checkouts/b/stacks/web/compose.yaml": "services:\n  web:\n    image: example/web:2\n",
	})
	live := filepath.Join(root, "live")
	point := func(checkout string) {
		t.Helper()
		os.RemoveAll(filepath.Join(live, "stacks", "web"))
		if err := os.MkdirAll(filepath.Join(live, "stacks"), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.Symlink(filepath.Join(root, "checkouts", checkout, "stacks", "web"), filepath.Join(live, "stacks", "web")); err != nil {
			t.Fatal(err)
		}
	}
	var c Cache
	ctx := context.Background()
	point("a")
	first := c.LoadAll(ctx, live, host)
	again := c.LoadAll(ctx, live, host)
	if len(first.Stacks) != 1 || first.Stacks[0] != again.Stacks[0] {
		t.Fatalf("the same checkout was loaded twice: %v, %v", first.Stacks, again.Stacks)
	}
	point("b")
	moved, err := c.Load(ctx, live, "web", host)
	if err != nil || moved == first.Stacks[0] || moved.Project.Services["web"].Image != "example/web:2" {
		t.Fatalf("after the link moved: %v, %v", moved, err)
	}
	// A policy that lets stacks read outside their folder bypasses it.
	yes := true
	open := policy.Resolve(policy.Settings{PathsOutsideStack: &yes})
	h := Host{Name: host.Name, Policy: &open}
	x, _ := c.Load(ctx, live, "web", h)
	y, _ := c.Load(ctx, live, "web", h)
	if x == nil || x == y {
		t.Fatal("with paths_outside_stack the cache was used")
	}
}

// SOPS-encrypted files of secrets and configs become their plaintext, in
// memory: a document by its name, anything else in sops's binary format.
func TestSOPSSecretFilesAreDecryptedInMemory(t *testing.T) {
	dir := repo(t, map[string]string{
		"stacks/app/compose.yaml": "services:\n  web:\n    image: x\n    secrets: [token, doc, plain]\n    configs: [conf]\n" +
			"secrets:\n  token: {file: ./token.bin}\n  doc: {file: ./doc.yaml}\n  plain: {file: ./plain.txt}\n" +
			"configs:\n  conf: {file: ./conf.json}\n",
		"stacks/app/token.bin": sopsFixture(t, "token.bin"),
		"stacks/app/doc.yaml":  sopsFixture(t, "app.yaml"),
		"stacks/app/plain.txt": "not encrypted\n",
		"stacks/app/conf.json": sopsFixture(t, "config.json"),
	})
	ids, err := secrets.LoadIdentities(filepath.Join("..", "secrets", "testdata", "test.agekey"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := Load(context.Background(), dir, "app", Host{Name: host.Name, Identities: ids})
	if err != nil {
		t.Fatal(err)
	}
	p := st.Project
	for name, want := range map[string]string{
		"token": "sealed-binary-secret\n",
		"doc":   sopsFixture(t, "app.sops-decrypted.yaml"),
	} {
		if s := p.Secrets[name]; s.File != "" || s.Content != want {
			t.Errorf("secret %s: file %q, content %q; want content %q", name, s.File, s.Content, want)
		}
	}
	if c := p.Configs["conf"]; c.File != "" || c.Content != sopsFixture(t, "config.sops-decrypted.json") {
		t.Errorf("config conf: file %q, content %q", c.File, c.Content)
	}
	if s := p.Secrets["plain"]; s.File == "" || s.Content != "" {
		t.Errorf("a plain secret file was taken in: %+v", s)
	}

	// Without a key the stack is Invalid, naming the first such secret's
	// file (secrets are judged in name order: doc, plain, token).
	_, err = Load(context.Background(), dir, "app", host)
	var e *Error
	if !errors.As(err, &e) || !strings.Contains(e.Error(), "doc.yaml is SOPS-encrypted and this host has no age key") || e.Line == 0 {
		t.Fatalf("without a key: %v", err)
	}
}
