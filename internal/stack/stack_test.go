package stack

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// repo writes files (slash paths relative to the root) into a new folder.
func repo(t testing.TB, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func envOf(t *testing.T, st *Stack, service, key string) string {
	t.Helper()
	svc, ok := st.Project.Services[service]
	if !ok {
		t.Fatalf("no service %s in %v", service, st.Project.ServiceNames())
	}
	v := svc.Environment[key]
	if v == nil {
		return ""
	}
	return *v
}

var host = Host{Name: "edge-1", Labels: map[string]string{"site": "berlin", "tier.level": "2"}}

func TestDiscover(t *testing.T) {
	dir := repo(t, map[string]string{
		"stacks/a/compose.yaml":           "services: {}",
		"stacks/b/compose.yml":            "services: {}",
		"stacks/c/docker-compose.yaml":    "services: {}",
		"stacks/d/docker-compose.yml":     "services: {}",
		"stacks/empty/README.md":          "not a stack",
		"stacks/file.yaml":                "services: {}",
		"stacks/dir-named/compose.yaml/x": "a folder named like a compose file is not one",
		"other/x/compose.yaml":            "services: {}",
	})
	real := repo(t, map[string]string{"compose.yaml": "services: {}"})
	if err := os.Symlink(real, filepath.Join(dir, "stacks", "linked")); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(dir, "gone"), filepath.Join(dir, "stacks", "dangling")); err != nil {
		t.Fatal(err)
	}
	got, err := Discover(dir)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Join(got, ",") != "a,b,c,d,linked" {
		t.Fatalf("discovered %v", got)
	}
	if got, err := Discover(t.TempDir()); err != nil || len(got) != 0 {
		t.Fatalf("no stacks folder: %v %v", got, err)
	}
	// A stacks/ that cannot be read is not "no stacks": the caller must not
	// take it for every stack removed.
	notDir := repo(t, map[string]string{"stacks": "a file"})
	if _, err := Discover(notDir); err == nil {
		t.Fatal("stacks/ as a file: no error")
	}
	if res := LoadAll(context.Background(), notDir, host); res.Err == nil {
		t.Fatal("LoadAll: no Err for an unreadable stacks/")
	}
}

// TestComposeFilePreference follows compose's own lookup order.
func TestComposeFilePreference(t *testing.T) {
	all := map[string]string{
		"compose.yaml":        "services:\n  from-compose-yaml: {image: x}\n",
		"compose.yml":         "services:\n  from-compose-yml: {image: x}\n",
		"docker-compose.yml":  "services:\n  from-docker-compose-yml: {image: x}\n",
		"docker-compose.yaml": "services:\n  from-docker-compose-yaml: {image: x}\n",
	}
	for _, winner := range []string{"compose.yaml", "compose.yml", "docker-compose.yml", "docker-compose.yaml"} {
		files := map[string]string{}
		for name, content := range all {
			files["stacks/s/"+name] = content
		}
		dir := repo(t, files)
		st, err := Load(context.Background(), dir, "s", host)
		if err != nil {
			t.Fatal(err)
		}
		if got := filepath.Base(st.Files[0]); got != winner {
			t.Fatalf("used %s, want %s", got, winner)
		}
		delete(all, winner)
	}
}

func TestLoadLikeCompose(t *testing.T) {
	t.Setenv("FROM_OS", "os")
	t.Setenv("BOTH", "os-wins")
	t.Setenv("GITOPSD_HOST", "spoofed")
	t.Setenv("GITOPSD_LABEL_SITE", "spoofed")
	t.Setenv("PASSED", "by-name")
	dir := repo(t, map[string]string{
		"stacks/web/.env": "FROM_DOTENV=dotenv\nBOTH=dotenv\nGITOPSD_HOST=dotenv\n",
		"stacks/web/compose.yaml": `name: not-this
services:
  web:
    image: app:${TAG:-1}
    env_file: [app.env]
    environment:
      DOTENV: ${FROM_DOTENV}
      OS: ${FROM_OS}
      BOTH: ${BOTH}
      HOST: ${GITOPSD_HOST}
      SITE: ${GITOPSD_LABEL_SITE}
      TIER: ${GITOPSD_LABEL_TIER_LEVEL}
      WHERE: ${PWD}
      LAYER: base
      PASSED:
    volumes: [./conf:/conf, data:/data]
  debug:
    image: app:1
    profiles: [debug]
    volumes: [debugdata:/d]
volumes:
  data: {}
  debugdata: {}
  unused: {}
x-gitopsd:
  drift: report
  backup: {volumes: {data: {schedule: "0 3 * * *"}}}
`,
		"stacks/web/app.env":             "FROM_ENV_FILE=yes\n",
		"stacks/web/compose.edge-1.yaml": "services:\n  web:\n    environment:\n      LAYER: overlay\n",
	})
	st, err := Load(context.Background(), dir, "web", host)
	if err != nil {
		t.Fatal(err)
	}
	if st.Name != "web" || st.Project.Name != "web" {
		t.Fatalf("name %q / project %q: a name: in the file must not rename the stack", st.Name, st.Project.Name)
	}
	want := map[string]string{
		"DOTENV": "dotenv", "OS": "os", "BOTH": "os-wins", // the process environment wins over .env
		"HOST": "edge-1", "SITE": "berlin", "TIER": "2", // gitopsd's variables win over both
		"LAYER": "overlay", "FROM_ENV_FILE": "yes", "PASSED": "by-name",
		"WHERE": filepath.Join(dir, "stacks", "web"),
	}
	for k, v := range want {
		if got := envOf(t, st, "web", k); got != v {
			t.Errorf("env %s = %q, want %q", k, got, v)
		}
	}
	web := st.Project.Services["web"]
	if len(web.EnvFiles) != 0 {
		t.Errorf("env_file kept after resolving it, as up does not: %v", web.EnvFiles)
	}
	if web.Image != "app:1" {
		t.Errorf("image %q", web.Image)
	}
	if _, ok := st.Project.Services["debug"]; ok {
		t.Error("a service with profiles is active without --profile")
	}
	if got := st.Project.VolumeNames(); strings.Join(got, ",") != "data" {
		t.Errorf("volumes %v: those no active service uses are dropped, as up drops them", got)
	}
	wantFiles := []string{filepath.Join(dir, "stacks", "web", "compose.yaml"), filepath.Join(dir, "stacks", "web", "compose.edge-1.yaml")}
	if !reflect.DeepEqual(st.Files, wantFiles) || !reflect.DeepEqual(st.Project.ComposeFiles, wantFiles) {
		t.Errorf("files %v, project files %v", st.Files, st.Project.ComposeFiles)
	}
	if st.Dir != filepath.Join(dir, "stacks", "web") || st.Project.WorkingDir != st.Dir {
		t.Errorf("dir %s, working dir %s", st.Dir, st.Project.WorkingDir)
	}
	if src := web.Volumes[0].Source; src != filepath.Join(st.Dir, "conf") {
		t.Errorf("relative bind resolved to %s", src)
	}
	if st.Options.Drift != DriftReport {
		t.Errorf("drift %q", st.Options.Drift)
	}
	if _, ok := st.Options.Raw["backup"]; !ok {
		t.Errorf("raw options %v lost backup", st.Options.Raw)
	}

	// Without the overlay's host, the base value stays.
	other, err := Load(context.Background(), dir, "web", Host{Name: "edge-2"})
	if err != nil {
		t.Fatal(err)
	}
	if got := envOf(t, other, "web", "LAYER"); got != "base" {
		t.Errorf("on another host LAYER = %q", got)
	}
	if len(other.Files) != 1 {
		t.Errorf("files %v", other.Files)
	}
}

// TestLoadThroughSymlink loads a stack as the daemon does, through its
// live view: stacks/<name> is a symlink into a revision's checkout, and
// every path compose records stays on the link's side.
func TestLoadThroughSymlink(t *testing.T) {
	live := liveView(t, "web", map[string]string{
		"stacks/STACK/compose.yaml": "services:\n  web:\n    image: x\n    volumes: [./conf:/conf]\n",
	})
	res := LoadAll(context.Background(), live, host)
	if len(res.Stacks) != 1 || len(res.Invalid) != 0 || res.Err != nil {
		t.Fatalf("stacks %v invalid %v err %v", res.Stacks, res.Invalid, res.Err)
	}
	st := res.Stacks[0]
	dir := filepath.Join(live, "stacks", "web")
	if st.Dir != dir || st.Project.WorkingDir != dir || st.Files[0] != filepath.Join(dir, "compose.yaml") {
		t.Errorf("dir %s, working dir %s, files %v: want them under %s", st.Dir, st.Project.WorkingDir, st.Files, dir)
	}
	if src := st.Project.Services["web"].Volumes[0].Source; src != filepath.Join(dir, "conf") {
		t.Errorf("bind source %s", src)
	}
}

func TestOptions(t *testing.T) {
	dir := repo(t, map[string]string{
		"stacks/plain/compose.yaml":   "services:\n  a: {image: x}\n",
		"stacks/report/compose.yaml":  "services:\n  a: {image: x}\nx-gitopsd:\n  drift: report\n  health: {timeout: 1m}\n  update: {}\n",
		"stacks/targets/compose.yaml": "services:\n  a: {image: x}\nx-gitopsd:\n  targets: {hosts: [\"edge-*\", db], labels: {site: berlin, rack: 7, gpu: true}}\n",
		"stacks/interp/compose.yaml":  "services:\n  a: {image: x}\nx-gitopsd:\n  drift: ${DRIFT:-report}\n",
		"stacks/empty/compose.yaml":   "services:\n  a: {image: x}\nx-gitopsd: {}\n",
	})
	load := func(name string) Options {
		t.Helper()
		st, err := Load(context.Background(), dir, name, host)
		if err != nil {
			t.Fatal(err)
		}
		return st.Options
	}
	if o := load("plain"); o.Drift != DriftHeal || o.Raw != nil || len(o.Targets.Hosts) != 0 || o.Targets.Labels != nil {
		t.Errorf("defaults %+v", o)
	}
	if o := load("report"); o.Drift != DriftReport || o.Raw["health"] == nil {
		t.Errorf("report %+v", o)
	}
	o := load("targets")
	if !reflect.DeepEqual(o.Targets.Hosts, []string{"edge-*", "db"}) || !reflect.DeepEqual(o.Targets.Labels, map[string]string{"site": "berlin", "rack": "7", "gpu": "true"}) {
		t.Errorf("targets %+v", o.Targets)
	}
	if o := load("interp"); o.Drift != DriftReport {
		t.Errorf("x-gitopsd is interpolated like the rest of the file: %+v", o)
	}
	if o := load("empty"); o.Drift != DriftHeal {
		t.Errorf("empty %+v", o)
	}
}

func TestTargetsMatch(t *testing.T) {
	h := Host{Name: "edge-01", Labels: map[string]string{"site": "berlin", "rack": "7"}}
	for _, c := range []struct {
		targets Targets
		want    bool
	}{
		{Targets{}, true},
		{Targets{Hosts: []string{"edge-01"}}, true},
		{Targets{Hosts: []string{"edge-*"}}, true},
		{Targets{Hosts: []string{"edge-0?"}}, true},
		{Targets{Hosts: []string{"core-*", "edge-0[0-1]"}}, true},
		{Targets{Hosts: []string{"core-*"}}, false},
		{Targets{Hosts: []string{"edge"}}, false},
		{Targets{Labels: map[string]string{"site": "berlin"}}, true},
		{Targets{Labels: map[string]string{"site": "berlin", "rack": "7"}}, true},
		{Targets{Labels: map[string]string{"site": "berlin", "rack": "8"}}, false},
		{Targets{Labels: map[string]string{"gpu": ""}}, false},
		{Targets{Hosts: []string{"edge-*"}, Labels: map[string]string{"site": "paris"}}, false},
		{Targets{Hosts: []string{"core-*"}, Labels: map[string]string{"site": "berlin"}}, false},
	} {
		if got := c.targets.Match(h); got != c.want {
			t.Errorf("%+v.Match(%+v) = %v", c.targets, h, got)
		}
	}
}

func TestLoadAllTargets(t *testing.T) {
	dir := repo(t, map[string]string{
		"stacks/all/compose.yaml":    "services:\n  a: {image: x}\n",
		"stacks/edges/compose.yaml":  "services:\n  a: {image: x}\nx-gitopsd:\n  targets: {hosts: [\"edge-*\"]}\n",
		"stacks/cores/compose.yaml":  "services:\n  a: {image: x}\nx-gitopsd:\n  targets: {hosts: [\"core-*\", \"db\"]}\n",
		"stacks/berlin/compose.yaml": "services:\n  a: {image: x}\nx-gitopsd:\n  targets: {labels: {site: berlin}}\n",
		"stacks/paris/compose.yaml":  "services:\n  a: {image: x}\nx-gitopsd:\n  targets: {hosts: [\"edge-*\"], labels: {site: paris}}\n",
		// One file for the whole fleet, targets from the host's labels.
		"stacks/fleet/compose.yaml": "services:\n  a: {image: \"x:${GITOPSD_LABEL_SITE}\"}\nx-gitopsd:\n  targets: {labels: {site: \"${GITOPSD_LABEL_SITE}\"}}\n",
	})
	res := LoadAll(context.Background(), dir, host)
	var names []string
	for _, st := range res.Stacks {
		names = append(names, st.Name)
	}
	if strings.Join(names, ",") != "all,berlin,edges,fleet" || strings.Join(res.Untargeted, ",") != "cores,paris" || len(res.Invalid) != 0 || res.Err != nil {
		t.Fatalf("stacks %v untargeted %v invalid %v err %v", names, res.Untargeted, res.Invalid, res.Err)
	}
}

func TestBadStackName(t *testing.T) {
	for _, name := range []string{"Web", "-web", "_web", "web.app", "web app", "wéb", ""} {
		_, err := Load(context.Background(), t.TempDir(), name, host)
		var e *Error
		if !errors.As(err, &e) || !strings.Contains(err.Error(), "invalid stack name") || e.Stack != name {
			t.Errorf("name %q: %v", name, err)
		}
	}
	for _, name := range []string{"web", "0", "web_2-b"} {
		dir := repo(t, map[string]string{"stacks/" + name + "/compose.yaml": "services:\n  a: {image: x}\n"})
		if _, err := Load(context.Background(), dir, name, host); err != nil {
			t.Errorf("name %q: %v", name, err)
		}
	}
}

func TestOneBrokenStackBesideGoodOnes(t *testing.T) {
	dir := repo(t, map[string]string{
		"stacks/good/compose.yaml":     "services:\n  a: {image: x}\n",
		"stacks/zgood/compose.yaml":    "services:\n  a: {image: x}\n",
		"stacks/broken/compose.yaml":   "services:\n  a: [\n",
		"stacks/unset/compose.yaml":    "services:\n  a: {image: \"${NOT_SET_ANYWHERE:?}\"}\n",
		"stacks/Bad Name/compose.yaml": "services:\n  a: {image: x}\n",
	})
	res := LoadAll(context.Background(), dir, host)
	if len(res.Stacks) != 2 || res.Stacks[0].Name != "good" || res.Stacks[1].Name != "zgood" {
		t.Fatalf("stacks %v", res.Stacks)
	}
	if len(res.Invalid) != 3 || !strings.Contains(res.Invalid["Bad Name"].Error(), "invalid stack name") {
		t.Fatalf("invalid %v", res.Invalid)
	}
	if got := res.Invalid["broken"].Error(); !strings.HasPrefix(got, "stacks/broken/compose.yaml:2: ") {
		t.Errorf("broken: %s", got)
	}
	if got := res.Invalid["unset"].Error(); !strings.HasPrefix(got, "stacks/unset/compose.yaml:2: ") {
		t.Errorf("unset: %s", got)
	}
}

func TestServiceHashLeavesProjectAlone(t *testing.T) {
	dir := repo(t, map[string]string{"stacks/s/compose.yaml": "services:\n  a:\n    image: x\n    deploy: {replicas: 3}\n"})
	st, err := Load(context.Background(), dir, "s", host)
	if err != nil {
		t.Fatal(err)
	}
	h1, err := ServiceHash(st.Project.Services["a"])
	if err != nil || len(h1) != 64 {
		t.Fatalf("hash %q %v", h1, err)
	}
	if r := st.Project.Services["a"].Deploy.Replicas; r == nil || *r != 3 {
		t.Fatal("hashing cleared the project's replicas")
	}
	scaled := st.Project.Services["a"]
	two := 2
	scaled.Deploy.Replicas = &two
	if h2, _ := ServiceHash(scaled); h2 != h1 {
		t.Fatal("replicas changed the hash; compose leaves them out")
	}
	changed := st.Project.Services["a"]
	changed.Image = "y"
	if h3, _ := ServiceHash(changed); h3 == h1 {
		t.Fatal("the image did not change the hash")
	}
}

// TestPlatformDefault follows compose up: DOCKER_DEFAULT_PLATFORM becomes
// the platform (and so changes the hash) of services that build.
func TestPlatformDefault(t *testing.T) {
	dir := repo(t, map[string]string{
		"stacks/s/.env":         "DOCKER_DEFAULT_PLATFORM=linux/arm64\n",
		"stacks/s/compose.yaml": "services:\n  built: {image: x, build: .}\n  pulled: {image: x}\n  pinned: {image: x, build: ., platform: linux/amd64}\n",
	})
	st, err := Load(context.Background(), dir, "s", host)
	if err != nil {
		t.Fatal(err)
	}
	for svc, want := range map[string]string{"built": "linux/arm64", "pulled": "", "pinned": "linux/amd64"} {
		if got := st.Project.Services[svc].Platform; got != want {
			t.Errorf("%s platform %q, want %q", svc, got, want)
		}
	}
}

func BenchmarkLoad(b *testing.B) {
	var sb strings.Builder
	sb.WriteString("services:\n")
	for i := range 10 {
		fmt.Fprintf(&sb, `  svc%d:
    image: app:${TAG:-1}
    environment: {A: "1", B: "${GITOPSD_HOST}"}
    ports: ["80"]
    volumes: [data:/data, ./conf:/conf:ro]
    healthcheck: {test: ["CMD", "/app", "probe"], interval: 2s}
    labels: {team: t%d}
    deploy: {replicas: 2, update_config: {order: start-first}}
`, i, i)
		if i > 0 {
			fmt.Fprintf(&sb, "    depends_on: [svc%d]\n", i-1)
		}
	}
	sb.WriteString("volumes:\n  data: {}\nx-gitopsd: {drift: report, targets: {hosts: [\"edge-*\"]}}\n")
	dir := repo(b, map[string]string{"stacks/bench/compose.yaml": sb.String(), "stacks/bench/.env": "TAG=2\n"})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Load(ctx, dir, "bench", host); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkServiceHash(b *testing.B) {
	dir := repo(b, map[string]string{"stacks/s/compose.yaml": "services:\n  a:\n    image: x\n    environment: {A: \"1\"}\n    ports: [\"80\"]\n    healthcheck: {test: [\"CMD\", \"true\"]}\n"})
	st, err := Load(context.Background(), dir, "s", host)
	if err != nil {
		b.Fatal(err)
	}
	svc := st.Project.Services["a"]
	b.ReportAllocs()
	for b.Loop() {
		if _, err := ServiceHash(svc); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkLoadAll100x5: a revision of 100 stacks of 5 services each, the
// size of a small fleet's repository, loaded as a reconcile loads it.
func BenchmarkLoadAll100x5(b *testing.B) {
	files := map[string]string{}
	for s := range 100 {
		var sb strings.Builder
		sb.WriteString("services:\n")
		for v := range 5 {
			fmt.Fprintf(&sb, "  svc%d:\n    image: app%d:1\n    environment: {A: \"1\", STACK: \"%d\"}\n    ports: [\"80\"]\n    volumes: [data:/data]\n    deploy: {update_config: {monitor: 1s}}\n", v, v, s)
		}
		sb.WriteString("volumes:\n  data: {}\n")
		files[fmt.Sprintf("stacks/s%03d/compose.yaml", s)] = sb.String()
	}
	dir := repo(b, files)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if res := LoadAll(ctx, dir, host); len(res.Stacks) != 100 {
			b.Fatalf("loaded %d stacks, invalid %v", len(res.Stacks), res.Invalid)
		}
	}
}
