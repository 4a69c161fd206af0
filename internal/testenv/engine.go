package testenv

import (
	"bufio"
	"context"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"math/big"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"
)

// Engine is an extra Docker engine of a test, next to the machine's own:
// one host of a fleet on one machine. It has its own config file ({}),
// data root, exec root, socket, pidfile and bridge, made here with
// `ip link add NAME type bridge`, and no iptables rules. Its own managed
// containerd comes with the exec root, so nothing of the main engine's is
// seen or touched.
//
// Never --bridge=none: that deletes the host's docker0, which breaks the
// main engine's default network for every later test.
type Engine struct {
	Host   string // for DOCKER_HOST: unix://…/docker.sock
	Client *client.Client
	Bridge string // the bridge's name
	dir    string
	proc   *serverProcess
}

// StartEngine starts an extra dockerd, and stops it when the test ends, also
// on failure: its containers, processes, mounts, folders and bridge are
// removed, and the test fails if the host's docker0 is gone afterwards.
func StartEngine(t testing.TB) *Engine {
	t.Helper()
	Docker(t) // the same rules: it fails when Docker is unusable, skips on GITOPSD_SKIP_DOCKER=1
	dockerd := NeedTool(t, "dockerd", "docker.io")
	// Short: the socket's path must fit in 108 bytes.
	dir, err := os.MkdirTemp("", "gtd-eng-")
	if err != nil {
		t.Fatal(err)
	}
	var b [3]byte
	_, _ = rand.Read(b[:])
	e := &Engine{Host: "unix://" + filepath.Join(dir, "docker.sock"), Bridge: "gtd" + hex.EncodeToString(b[:]), dir: dir}
	t.Cleanup(func() { e.stop(t) })
	octet, err := freeOctet()
	if err != nil {
		t.Fatal(err)
	}
	for _, argv := range [][]string{
		{"link", "add", e.Bridge, "type", "bridge"},
		{"addr", "add", fmt.Sprintf("10.%d.0.1/24", octet), "dev", e.Bridge},
		{"link", "set", e.Bridge, "up"},
	} {
		if out, err := exec.Command("ip", argv...).CombinedOutput(); err != nil {
			t.Fatalf("ip %s: %v\n%s", strings.Join(argv, " "), err, out)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "daemon.json"), []byte("{}\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	e.proc = &serverProcess{name: "dockerd " + e.Bridge, logf: filepath.Join(dir, "dockerd.log"), argv: []string{dockerd,
		"--config-file=" + filepath.Join(dir, "daemon.json"),
		"--data-root=" + filepath.Join(dir, "data"),
		"--exec-root=" + filepath.Join(dir, "exec"),
		"--pidfile=" + filepath.Join(dir, "docker.pid"),
		"-H", e.Host,
		"--bridge=" + e.Bridge,
		"--iptables=false",
		fmt.Sprintf("--default-address-pool=base=10.%d.128.0/17,size=24", octet),
	}}
	start := time.Now()
	if err := e.proc.start(e.waitAnswers); err != nil {
		t.Fatal(err)
	}
	t.Logf("dockerd %s on %s started in %v", e.Bridge, e.Host, time.Since(start).Round(time.Millisecond))
	return e
}

// waitAnswers waits until the engine answers a ping (a loaded machine
// takes a while).
func (e *Engine) waitAnswers(exited <-chan struct{}) error {
	cli, err := client.New(client.WithHost(e.Host), client.WithAPIVersionNegotiation())
	if err != nil {
		return err
	}
	deadline := time.Now().Add(3 * time.Minute)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		_, err := cli.Ping(ctx, client.PingOptions{NegotiateAPIVersion: true})
		cancel()
		if err == nil {
			e.Client = cli
			return nil
		}
		select {
		case <-exited:
			cli.Close()
			return fmt.Errorf("exited: %v", err)
		case <-time.After(200 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			cli.Close()
			return fmt.Errorf("does not answer on %s: %v", e.Host, err)
		}
	}
}

// AppImage builds the test app into an image on this engine (AppImage's
// image, which cannot be pulled). It goes with the engine's data root.
func (e *Engine) AppImage(t testing.TB, tag string) string {
	t.Helper()
	testapp.once.Do(func() { testapp.bin, testapp.err = buildTestApp() })
	if testapp.err != nil {
		t.Fatalf("build test app: %v", testapp.err)
	}
	if err := buildImage(e.Client, tag, testapp.bin); err != nil {
		t.Fatalf("build image %s on %s: %v", tag, e.Host, err)
	}
	return tag
}

// Restart stops the engine as `systemctl restart docker` does (SIGTERM:
// it stops its containers, then exits) and starts it again over the same
// data, then waits until it answers. Its containers stay, and so does
// e.Client, which reconnects by itself.
//
// It comes back without --default-address-pool: a dockerd that starts with
// address pools over a data root that holds its default bridge network
// deletes the host's docker0 (by that name, whatever its --bridge), which
// breaks the main engine. The networks it has keep their subnets; a test
// must create none on it after a restart (they would come from Docker's
// default pools, the main engine's).
func (e *Engine) Restart(t testing.TB) {
	t.Helper()
	e.proc.mu.Lock()
	cmd, exited := e.proc.cmd, e.proc.exited
	e.proc.mu.Unlock()
	if cmd == nil {
		t.Fatalf("engine %s is not running", e.Bridge)
	}
	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatalf("stop engine %s: %v", e.Bridge, err)
	}
	select {
	case <-exited:
	case <-time.After(90 * time.Second):
		t.Fatalf("engine %s did not stop within 90s\n%s", e.Bridge, e.Log())
	}
	e.proc.mu.Lock()
	e.proc.cmd, e.proc.exited = nil, nil
	e.proc.mu.Unlock()
	e.proc.argv = slices.DeleteFunc(e.proc.argv, func(a string) bool { return strings.HasPrefix(a, "--default-address-pool=") })
	was := e.Client
	if err := e.proc.start(e.waitAnswers); err != nil {
		t.Fatal(err)
	}
	if was != nil && e.Client != was {
		e.Client.Close()
		e.Client = was
	}
}

// Log is the end of the engine's log.
func (e *Engine) Log() string {
	if e.proc == nil {
		return ""
	}
	return e.proc.log()
}

// stop removes the engine's containers, stops dockerd (and what it
// started), unmounts what is left under its folder, removes the folder
// and the bridge, and checks that docker0 is still there.
func (e *Engine) stop(t testing.TB) {
	if e.Client != nil {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		if list, err := e.Client.ContainerList(ctx, client.ContainerListOptions{All: true}); err == nil {
			for _, c := range list.Items {
				if _, err := e.Client.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true, RemoveVolumes: true}); err != nil {
					t.Logf("engine %s: remove container %s: %v", e.Bridge, c.ID[:12], err)
				}
			}
		}
		cancel()
		e.Client.Close()
	}
	if e.proc != nil {
		e.proc.mu.Lock()
		cmd, exited := e.proc.cmd, e.proc.exited
		e.proc.mu.Unlock()
		if cmd != nil {
			// Remember what it started (its containerd, shims): a dockerd
			// that does not stop in time is killed, and they with it.
			pids := []int{cmd.Process.Pid}
			for i := 0; i < len(pids); i++ {
				pids = append(pids, childrenOf(pids[i])...)
			}
			_ = cmd.Process.Signal(syscall.SIGTERM)
			select {
			case <-exited:
			case <-time.After(90 * time.Second):
				t.Logf("engine %s did not stop in 90s: killed", e.Bridge)
			}
			_ = e.proc.stop()
			for _, pid := range pids {
				if b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid)); err == nil && strings.Contains(string(b), e.dir) {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
	}
	for _, m := range mountsUnder(e.dir) {
		if err := syscall.Unmount(m, syscall.MNT_DETACH); err != nil {
			t.Logf("engine %s: unmount %s: %v", e.Bridge, m, err)
		}
	}
	if err := os.RemoveAll(e.dir); err != nil {
		t.Errorf("engine %s: remove %s: %v", e.Bridge, e.dir, err)
	}
	if out, err := exec.Command("ip", "link", "show", e.Bridge).CombinedOutput(); err == nil {
		if out, err := exec.Command("ip", "link", "del", e.Bridge).CombinedOutput(); err != nil {
			t.Errorf("engine: delete bridge %s: %v\n%s", e.Bridge, err, out)
		}
	} else if !strings.Contains(string(out), "does not exist") {
		t.Logf("engine: ip link show %s: %v %s", e.Bridge, err, out)
	}
	if out, err := exec.Command("ip", "link", "show", "docker0").CombinedOutput(); err != nil {
		t.Errorf("docker0 is gone after stopping engine %s: %v\n%s", e.Bridge, err, out)
	}
}

// mountsUnder lists the mount points under dir, deepest first.
func mountsUnder(dir string) []string {
	f, err := os.Open("/proc/self/mountinfo")
	if err != nil {
		return nil
	}
	defer f.Close()
	var out []string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) > 4 && (fields[4] == dir || strings.HasPrefix(fields[4], dir+"/")) {
			out = append(out, fields[4])
		}
	}
	slices.SortFunc(out, func(a, b string) int { return len(b) - len(a) })
	return out
}

// freeOctet picks N for the bridge's 10.N.0.0/16 that no address or route
// of the host uses yet.
func freeOctet() (int, error) {
	out, err := exec.Command("ip", "-4", "route", "show", "table", "all").CombinedOutput()
	if err != nil {
		return 0, fmt.Errorf("ip route: %v\n%s", err, out)
	}
	addrs, _ := exec.Command("ip", "-4", "-br", "addr").CombinedOutput()
	used := string(out) + string(addrs)
	for range 50 {
		n, err := rand.Int(rand.Reader, big.NewInt(100))
		if err != nil {
			return 0, err
		}
		octet := 100 + int(n.Int64())
		if !strings.Contains(used, fmt.Sprintf("10.%d.", octet)) {
			return octet, nil
		}
	}
	return 0, fmt.Errorf("no free 10.N.0.0/16 for a test bridge")
}
