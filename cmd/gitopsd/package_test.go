package main

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/gitopsd/gitopsd/internal/testenv"
)

// TestDebInstallsAndRemoves installs the amd64 .deb that `make package`
// built on this machine and checks what an operator gets: the files (unit
// in /usr/lib, gzipped man pages, gitopsd-run(1) with the configuration
// reference, copyright, changelog), the gitopsd group, an edited config
// kept by a reinstall; then the packaged unit's socket layout, under
// systemd when it runs this machine, else set up as the unit's directives
// say, with the daemon started as its ExecStart= says: a member of the
// group runs `status`, and is refused `sync` (changes are root's); a user
// outside the group cannot connect at all. Removal takes the binary and
// leaves config and state; purge takes them, but for volume snapshots.
// It changes the machine (package, users, /run/gitopsd, /var/lib/gitopsd),
// so only `make test-package` (CI) runs it.
func TestDebInstallsAndRemoves(t *testing.T) {
	if os.Getenv("GITOPSD_TEST_PACKAGE") != "1" {
		t.Skip("installs a package on this machine: make test-package runs it (CI does)")
	}
	deb := packagedDeb(t)
	t.Logf("package: %s", deb)
	run := func(name string, args ...string) string {
		t.Helper()
		out, err := exec.Command(name, args...).CombinedOutput()
		if err != nil {
			t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
		}
		return string(out)
	}
	if _, err := os.Stat("/var/lib/gitopsd"); err == nil {
		t.Fatal("/var/lib/gitopsd exists before the install: this machine runs gitopsd, not a place for this test")
	}
	t.Cleanup(func() {
		_ = exec.Command("dpkg", "--purge", "gitopsd").Run()
		_ = os.RemoveAll("/var/lib/gitopsd")
		_ = os.RemoveAll("/run/gitopsd")
	})

	run("dpkg", "-i", deb)
	if out := run("/usr/bin/gitopsd", "version"); !strings.HasPrefix(out, "gitopsd ") {
		t.Fatalf("gitopsd version: %q", out)
	}
	const unitPath = "/usr/lib/systemd/system/gitopsd.service"
	for _, path := range []string{
		unitPath, "/etc/gitopsd/gitopsd.yaml", "/var/lib/gitopsd",
		"/usr/share/man/man1/gitopsd.1.gz", "/usr/share/man/man1/gitopsd-status.1.gz",
		"/usr/share/doc/gitopsd/copyright", "/usr/share/doc/gitopsd/changelog.Debian.gz",
		"/usr/share/bash-completion/completions/gitopsd", "/usr/share/gitopsd/monitoring/gitopsd-alerts.yaml",
		"/usr/share/gitopsd/monitoring/gitopsd-fleet-alerts.yaml", "/usr/share/gitopsd/monitoring/gitopsd-fleet-dashboard.json",
	} {
		if _, err := os.Stat(path); err != nil {
			t.Errorf("after install: %v", err)
		}
	}
	// The packaged config sends the reader to man gitopsd-run for the keys.
	cfg, err := os.ReadFile("/etc/gitopsd/gitopsd.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(cfg), "man gitopsd-run") {
		t.Errorf("the packaged config does not point at man gitopsd-run:\n%s", cfg)
	}
	page := gunzipFile(t, "/usr/share/man/man1/gitopsd-run.1.gz")
	for _, want := range []string{".SH CONFIGURATION", "state_dir", "source:", "GITOPSD_SOURCE_URL"} {
		if !strings.Contains(page, want) {
			t.Errorf("gitopsd-run(1) lacks %q: it should carry the configuration reference", want)
		}
	}
	if b, err := os.ReadFile("/usr/share/doc/gitopsd/copyright"); err != nil || !strings.Contains(string(b), "License: Apache-2.0") {
		t.Errorf("copyright: %v\n%s", err, b)
	}
	// The installed unit verifies, man: link included.
	if analyze, err := exec.LookPath("systemd-analyze"); err == nil {
		if out, err := exec.Command(analyze, "verify", unitPath).CombinedOutput(); err != nil || len(bytes.TrimSpace(out)) > 0 {
			t.Errorf("systemd-analyze verify %s: %v\n%s", unitPath, err, out)
		}
	}
	group, err := user.LookupGroup("gitopsd")
	if err != nil {
		t.Fatalf("the package did not create the group gitopsd: %v", err)
	}
	gid, _ := strconv.Atoi(group.Gid)

	// The operator's edit: a source, and a marker. It survives a reinstall
	// (an upgrade does the same).
	repo := pkgTestRepo(t)
	edited := strings.Replace(string(cfg), `url: ""`, "url: "+repo, 1)
	if edited == string(cfg) {
		t.Fatalf("the packaged config has no `url: \"\"` to set:\n%s", cfg)
	}
	// No fixed port on a shared machine: metrics are not what is tested.
	edited = strings.Replace(edited, "metrics: 127.0.0.1:9469", `metrics: ""`, 1) + "# edited by the operator\n"
	if err := os.WriteFile("/etc/gitopsd/gitopsd.yaml", []byte(edited), 0o640); err != nil {
		t.Fatal(err)
	}
	run("dpkg", "-i", deb)
	if b, _ := os.ReadFile("/etc/gitopsd/gitopsd.yaml"); string(b) != edited {
		t.Fatalf("the reinstall replaced the edited config:\n%s", b)
	}

	// The unit's socket layout, and what group members may do through it.
	stop := startPackagedUnit(t, unitPath)
	sock := "/run/gitopsd/gitopsd.sock"
	waitFor(t, 60*time.Second, "the packaged daemon's socket", func() bool {
		return exec.Command("/usr/bin/gitopsd", "status").Run() == nil
	})
	for _, path := range []string{"/run/gitopsd", sock} {
		if fi, err := os.Stat(path); err == nil {
			st := fi.Sys().(*syscall.Stat_t)
			t.Logf("%s: %v uid %d gid %d", path, fi.Mode(), st.Uid, st.Gid)
		}
	}
	// The socket is the access control: root's and the group's, nobody
	// else's.
	if fi, err := os.Stat(sock); err != nil {
		t.Fatal(err)
	} else if st := fi.Sys().(*syscall.Stat_t); fi.Mode() != 0o660|os.ModeSocket || st.Uid != 0 || int(st.Gid) != gid {
		t.Errorf("%s is %v %d:%d, want %v root:gitopsd (%d)", sock, fi.Mode(), st.Uid, st.Gid, 0o660|os.ModeSocket, gid)
	}
	member := testUser(t, "m", "gitopsd")
	out, errOut, code := runAs(t, member, "/usr/bin/gitopsd", "status")
	if code != 0 || !strings.HasPrefix(out, "host ") {
		t.Errorf("gitopsd status as %s (group gitopsd): exit %d\n%s%s", member, code, out, errOut)
	}
	out, errOut, code = runAs(t, member, "/usr/bin/gitopsd", "sync")
	if code != 1 || !strings.Contains(errOut, "needs root") {
		t.Errorf("gitopsd sync as %s (group gitopsd): exit %d, want 1 and \"needs root\"\n%s%s", member, code, out, errOut)
	}
	stranger := testUser(t, "s", "")
	out, errOut, code = runAs(t, stranger, "/usr/bin/gitopsd", "status")
	if code == 0 || !strings.Contains(errOut, "permission denied") {
		t.Errorf("gitopsd status as %s (not in the group): exit %d, want a refusal naming permission denied\n%s%s", stranger, code, out, errOut)
	}
	stop()

	// Removal: the binary goes, config and state stay.
	if err := os.MkdirAll("/var/lib/gitopsd/snapshots/web", 0o750); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile("/var/lib/gitopsd/snapshots/web/marker", []byte("a snapshot"), 0o600); err != nil {
		t.Fatal(err)
	}
	run("dpkg", "-r", "gitopsd")
	if _, err := os.Stat("/usr/bin/gitopsd"); !os.IsNotExist(err) {
		t.Fatalf("after dpkg -r the binary is still there: %v", err)
	}
	if b, err := os.ReadFile("/etc/gitopsd/gitopsd.yaml"); err != nil || string(b) != edited {
		t.Fatalf("dpkg -r took the config: %v", err)
	}
	if _, err := os.Stat("/var/lib/gitopsd/gitopsd.db"); err != nil {
		t.Fatalf("dpkg -r took the state: %v", err)
	}

	// Purge: config and state go; the volume snapshots stay, and it says so.
	out = run("dpkg", "--purge", "gitopsd")
	for _, gone := range []string{"/etc/gitopsd", "/var/lib/gitopsd/gitopsd.db"} {
		if _, err := os.Stat(gone); !os.IsNotExist(err) {
			t.Errorf("after dpkg --purge %s is still there: %v", gone, err)
		}
	}
	if _, err := os.Stat("/var/lib/gitopsd/snapshots/web/marker"); err != nil {
		t.Errorf("dpkg --purge took the volume snapshots: %v", err)
	}
	if !strings.Contains(out, "kept the volume snapshots") {
		t.Errorf("dpkg --purge kept the snapshots without saying so:\n%s", out)
	}
}

// packagedDeb is the .deb to install: GITOPSD_TEST_DEB (make test-package
// names the one it just built), else the newest amd64 .deb in dist/.
func packagedDeb(t *testing.T) string {
	t.Helper()
	if deb := os.Getenv("GITOPSD_TEST_DEB"); deb != "" {
		return deb
	}
	debs, _ := filepath.Glob(filepath.Join("..", "..", "dist", "gitopsd_*_amd64.deb"))
	if len(debs) == 0 {
		t.Fatal("no dist/gitopsd_*_amd64.deb: run make package")
	}
	mtime := func(p string) time.Time { fi, _ := os.Stat(p); return fi.ModTime() }
	sort.Slice(debs, func(i, j int) bool { return mtime(debs[i]).Before(mtime(debs[j])) })
	return debs[len(debs)-1]
}

// pkgTestRepo is a Git repository with one commit and no stacks, where the
// packaged daemon can read it: not under /tmp or /home, which the unit
// hides (PrivateTmp=, ProtectHome=).
func pkgTestRepo(t *testing.T) string {
	t.Helper()
	src := testenv.NewGitRepo(t)
	src.Commit(t, "empty", map[string]string{"README.md": "no stacks\n"})
	dir, err := os.MkdirTemp("/var/lib", "gitopsd-pkgtest-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	bare := filepath.Join(dir, "repo.git")
	if out, err := exec.Command("git", "clone", "-q", "--bare", src.Bare, bare).CombinedOutput(); err != nil {
		t.Fatalf("git clone --bare: %v\n%s", err, out)
	}
	return bare
}

// startPackagedUnit starts gitopsd as the installed unit does and returns
// how to stop it. Under systemd (PID 1) that is systemctl. Elsewhere (a
// container, this CI) it does what systemd would for this unit: before each
// of its ExecStartPre= lines and its ExecStart= (a child process), it
// creates RuntimeDirectory=, StateDirectory= and ConfigurationDirectory=
// with their modes, owned as the unit's User=/Group= say (root when unset).
func startPackagedUnit(t *testing.T, unitPath string) (stop func()) {
	t.Helper()
	if fi, err := os.Stat("/run/systemd/system"); err == nil && fi.IsDir() {
		for _, args := range [][]string{{"daemon-reload"}, {"start", "gitopsd.service"}} {
			if out, err := exec.Command("systemctl", args...).CombinedOutput(); err != nil {
				t.Fatalf("systemctl %s: %v\n%s", strings.Join(args, " "), err, out)
			}
		}
		stop := func() { _ = exec.Command("systemctl", "stop", "gitopsd.service").Run() }
		t.Cleanup(stop)
		return stop
	}
	t.Log("no systemd on this machine: setting up the unit's directories and running its commands as systemd would")
	unit := unitDirectives(t, unitPath)
	uid, gid := 0, 0
	if name := unit.last("User"); name != "" {
		u, err := user.Lookup(name)
		if err != nil {
			t.Fatalf("the unit's User=%s: %v", name, err)
		}
		uid, _ = strconv.Atoi(u.Uid)
		gid, _ = strconv.Atoi(u.Gid)
	}
	if name := unit.last("Group"); name != "" {
		g, err := user.LookupGroup(name)
		if err != nil {
			t.Fatalf("the unit's Group=%s: %v", name, err)
		}
		gid, _ = strconv.Atoi(g.Gid)
	}
	// systemd sets the directories up for every command it runs, undoing
	// what a command before changed of their owner or mode.
	setupDirs := func() {
		for _, d := range []struct{ key, root string }{{"RuntimeDirectory", "/run"}, {"StateDirectory", "/var/lib"}, {"ConfigurationDirectory", "/etc"}} {
			modeText := unit.last(d.key + "Mode")
			if modeText == "" {
				modeText = "0755" // systemd's default
			}
			mode, err := strconv.ParseUint(modeText, 8, 32)
			if err != nil {
				t.Fatalf("the unit's %sMode=%s: %v", d.key, modeText, err)
			}
			for _, name := range strings.Fields(unit.last(d.key)) {
				dir := filepath.Join(d.root, name)
				if err := os.MkdirAll(dir, 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.Chmod(dir, os.FileMode(mode)); err != nil {
					t.Fatal(err)
				}
				// systemd leaves the owner of a ConfigurationDirectory= alone.
				if d.key != "ConfigurationDirectory" {
					if err := os.Chown(dir, uid, gid); err != nil {
						t.Fatal(err)
					}
				}
				if d.key == "RuntimeDirectory" {
					t.Cleanup(func() { os.RemoveAll(dir) }) // as systemd does on stop
				}
			}
		}
	}
	for _, line := range unit.all("ExecStartPre") {
		setupDirs()
		argv, ignoreFailure := execLine(line)
		if out, err := exec.Command(argv[0], argv[1:]...).CombinedOutput(); err != nil && !ignoreFailure {
			t.Fatalf("the unit's ExecStartPre=%s: %v\n%s", line, err, out)
		}
	}
	setupDirs()
	argv, _ := execLine(unit.last("ExecStart"))
	cmd := exec.Command(argv[0], argv[1:]...)
	var logs bytes.Buffer
	cmd.Stdout, cmd.Stderr = &logs, &logs
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(uid), Gid: uint32(gid)}}
	if err := cmd.Start(); err != nil {
		t.Fatalf("the unit's ExecStart=: %v", err)
	}
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		_ = cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-done:
		case <-time.After(30 * time.Second): // the unit's TimeoutStopSec=
			_ = cmd.Process.Kill()
			<-done
		}
		if t.Failed() {
			t.Logf("the packaged daemon's log:\n%s", logs.String())
		}
	}
	t.Cleanup(stop)
	return stop
}

// directives are a unit file's [Service] settings, in file order.
type directives map[string][]string

func (d directives) all(key string) []string { return d[key] }

func (d directives) last(key string) string {
	if v := d[key]; len(v) > 0 {
		return v[len(v)-1]
	}
	return ""
}

func unitDirectives(t *testing.T, path string) directives {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d := directives{}
	section := ""
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case line == "" || strings.HasPrefix(line, "#") || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "["):
			section = line
		case section == "[Service]":
			if k, v, ok := strings.Cut(line, "="); ok {
				d[strings.TrimSpace(k)] = append(d[strings.TrimSpace(k)], strings.TrimSpace(v))
			}
		}
	}
	if err := sc.Err(); err != nil {
		t.Fatal(err)
	}
	return d
}

// execLine splits an Exec*= value (this unit quotes nothing) and its
// prefixes: '-' ignores a failure; '+', '!', ':' and '@' change how
// systemd runs it, which does not matter for a process started as root.
func execLine(line string) (argv []string, ignoreFailure bool) {
	cmd := strings.TrimLeft(line, "-+!:@")
	ignoreFailure = strings.Contains(line[:len(line)-len(cmd)], "-")
	return strings.Fields(cmd), ignoreFailure
}

// testUser creates a system user for this test (tag tells them apart), in
// group if given, and removes it at the end.
func testUser(t *testing.T, tag, group string) string {
	t.Helper()
	name := fmt.Sprintf("gitopsd-test-%s%d", tag, os.Getpid())
	args := []string{"--system", "--no-create-home", "--shell", "/usr/sbin/nologin"}
	if group != "" {
		args = append(args, "--groups", group)
	}
	if out, err := exec.Command("useradd", append(args, name)...).CombinedOutput(); err != nil {
		t.Fatalf("useradd %s: %v\n%s", name, err, out)
	}
	t.Cleanup(func() { _ = exec.Command("userdel", name).Run() })
	return name
}

// runAs runs a command as a user with that user's groups, as a login would
// give them (runuser), and returns stdout, stderr and the exit code.
func runAs(t *testing.T, name string, argv ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command("runuser", append([]string{"-u", name, "--"}, argv...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("runuser -u %s %v: %v", name, argv, err)
	}
	return stdout.String(), stderr.String(), code
}

func gunzipFile(t *testing.T, path string) string {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatalf("%s is not gzipped: %v", path, err)
	}
	b, err := io.ReadAll(zr)
	if err != nil {
		t.Fatalf("gunzip %s: %v", path, err)
	}
	return string(b)
}
