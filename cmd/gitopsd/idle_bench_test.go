package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gitopsd/gitopsd/internal/testenv"
)

// BenchmarkIdle runs the gitopsd binary with GITOPSD_BENCH_IDLE_STACKS
// stacks (default 20) of GITOPSD_BENCH_IDLE_SERVICES services each
// (default 1), converged, and then leaves it alone for GITOPSD_BENCH_IDLE
// (default 60s) with the default poll and
// drift check periods (1m), with the packaged unit's Environment= (GOGC):
// its resident memory at the end and the CPU it used over that time, per
// minute, are the figures, resident memory also split into anonymous
// (heap, stacks) and file pages (mostly the binary's).
// GITOPSD_BENCH_BINARY runs that binary instead of the test build, e.g.
// make build's stripped one, or an older build to compare with. Run it
// once (-benchtime=1x); make bench repeats it with -count.
func BenchmarkIdle(b *testing.B) {
	bin := binary
	if v := os.Getenv("GITOPSD_BENCH_BINARY"); v != "" {
		bin = v
	}
	stacks := 20
	if v := os.Getenv("GITOPSD_BENCH_IDLE_STACKS"); v != "" {
		stacks, _ = strconv.Atoi(v)
	}
	services := 1
	if v := os.Getenv("GITOPSD_BENCH_IDLE_SERVICES"); v != "" {
		services, _ = strconv.Atoi(v)
	}
	idle := time.Minute
	if v := os.Getenv("GITOPSD_BENCH_IDLE"); v != "" {
		var err error
		if idle, err = time.ParseDuration(v); err != nil {
			b.Fatal(err)
		}
	}
	testenv.Docker(b)
	image := testenv.AppImage(b, "gitopsd-test-cli:"+testenv.UniqueName(b, "v"))
	repo := testenv.NewGitRepo(b)
	prefix := testenv.UniqueName(b, "idle")
	files, names := map[string]string{}, []string{}
	for i := range stacks {
		name := fmt.Sprintf("%s-%02d", prefix, i)
		names = append(names, name)
		compose := "services:\n"
		for j := range services {
			compose += fmt.Sprintf("  web%d:\n    image: %s\n    pull_policy: never\n    environment: {VERSION: v1}\n    deploy: {update_config: {monitor: 100ms}}\n    labels: {%s: \"1\"}\n",
				j, image, testenv.TestLabel)
		}
		files["stacks/"+name+"/compose.yaml"] = compose + fmt.Sprintf("networks:\n  default:\n    labels: {%s: \"1\"}\n", testenv.TestLabel)
	}
	testenv.CleanupProjects(b, names...)
	repo.Commit(b, "idle fleet", files)
	state := b.TempDir()
	sock := filepath.Join(state, "gitopsd.sock")
	cfg := filepath.Join(state, "gitopsd.yaml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("source: {url: %s}\nhost: {name: testhost}\nstate_dir: %s\nsocket: %s\nmetrics: \"\"\n", repo.Bare, state, sock)), 0o644); err != nil {
		b.Fatal(err)
	}

	for b.Loop() {
		cmd := exec.Command(bin, "run", "--config", cfg)
		cmd.Env = append(os.Environ(), unitEnvironment(b)...) // as the packaged unit runs it (GOGC)
		cmd.Stdout, cmd.Stderr = nil, nil
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
		deadline := time.Now().Add(time.Minute)
		for {
			if _, err := os.Stat(sock); err == nil {
				break
			}
			if time.Now().After(deadline) {
				b.Fatal("the daemon's socket did not appear")
			}
			time.Sleep(50 * time.Millisecond) // polling for a file: no event to wait on
		}
		// Queued behind the first reconcile: when it returns, all converged.
		if out, err := exec.Command(bin, "sync", "--wait", "--socket", sock).CombinedOutput(); err != nil {
			b.Fatalf("sync --wait: %v\n%s", err, out)
		}
		cpuBefore := processCPU(b, cmd.Process.Pid)
		time.Sleep(idle) // the measurement: the daemon left alone
		cpu := processCPU(b, cmd.Process.Pid) - cpuBefore
		rss, anon := processRSS(b, cmd.Process.Pid)
		b.ReportMetric(float64(rss)/(1<<20), "MiB-idle-rss")
		b.ReportMetric(float64(anon)/(1<<20), "MiB-idle-rss-anon")
		b.ReportMetric(float64(rss-anon)/(1<<20), "MiB-idle-rss-file")
		b.ReportMetric(float64(cpu.Milliseconds())/idle.Minutes(), "cpu-ms-per-idle-min")
		b.Logf("%d stacks of %d services: RSS %.1f MiB (anon %.1f), %s CPU over %s idle", stacks, services, float64(rss)/(1<<20), float64(anon)/(1<<20), cpu, idle)
	}
}

// unitEnvironment is the Environment= settings of the packaged unit
// (systemd/gitopsd.service), which the daemon's memory depends on.
func unitEnvironment(b *testing.B) []string {
	raw, err := os.ReadFile(filepath.Join("..", "..", "systemd", "gitopsd.service"))
	if err != nil {
		b.Fatal(err)
	}
	var env []string
	for _, line := range strings.Split(string(raw), "\n") {
		if v, ok := strings.CutPrefix(line, "Environment="); ok {
			env = append(env, strings.Fields(v)...)
		}
	}
	return env
}

// processCPU is the user and system CPU time of a process (/proc/PID/stat).
func processCPU(b *testing.B, pid int) time.Duration {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// The command name may hold spaces; the fields after its ")" are fixed:
	// utime and stime are the 14th and 15th fields of the line.
	fields := strings.Fields(string(raw[strings.LastIndexByte(string(raw), ')')+2:]))
	utime, _ := strconv.ParseInt(fields[11], 10, 64)
	stime, _ := strconv.ParseInt(fields[12], 10, 64)
	const ticksPerSecond = 100 // USER_HZ on Linux
	return time.Duration(utime+stime) * time.Second / ticksPerSecond
}

// processRSS is a process's resident memory in bytes, and its anonymous
// part (/proc/PID/smaps_rollup); the rest is file pages, the binary's.
func processRSS(b *testing.B, pid int) (rss, anon int64) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		b.Fatal(err)
	}
	kb := func(field string) int64 {
		for _, line := range strings.Split(string(raw), "\n") {
			if rest, ok := strings.CutPrefix(line, field+":"); ok {
				n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
				return n << 10
			}
		}
		b.Fatalf("no %s in smaps_rollup", field)
		return 0
	}
	return kb("Rss"), kb("Anonymous")
}
