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
// (default 60s) with the default poll and drift check periods (1m): its
// resident memory at the end, split into anonymous memory (the heap,
// stacks) and file-backed pages (mostly the binary's own) as
// /proc/PID/smaps_rollup counts them, and the CPU it used over that time,
// per minute, are the figures. Run it once (-benchtime=1x); make bench
// repeats it with -count.
func BenchmarkIdle(b *testing.B) {
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
		cmd := exec.Command(binary, "run", "--config", cfg)
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
		if out, err := exec.Command(binary, "sync", "--wait", "--socket", sock).CombinedOutput(); err != nil {
			b.Fatalf("sync --wait: %v\n%s", err, out)
		}
		cpuBefore := processCPU(b, cmd.Process.Pid)
		time.Sleep(idle) // the measurement: the daemon left alone
		cpu := processCPU(b, cmd.Process.Pid) - cpuBefore
		rss := processRSS(b, cmd.Process.Pid)
		anon, file := processRSSSplit(b, cmd.Process.Pid)
		b.ReportMetric(float64(rss)/(1<<20), "MiB-idle-rss")
		b.ReportMetric(float64(anon)/(1<<20), "MiB-idle-rss-anon")
		b.ReportMetric(float64(file)/(1<<20), "MiB-idle-rss-file")
		b.ReportMetric(float64(cpu.Milliseconds())/idle.Minutes(), "cpu-ms-per-idle-min")
		b.Logf("%d stacks of %d services: RSS %.1f MiB (anon %.1f, file-backed %.1f), %s CPU over %s idle",
			stacks, services, float64(rss)/(1<<20), float64(anon)/(1<<20), float64(file)/(1<<20), cpu, idle)
	}
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

// processRSSSplit is a process's resident memory in bytes, anonymous and
// file-backed (/proc/PID/smaps_rollup: Rss minus Anonymous is the pages
// of files, the binary's text and data first).
func processRSSSplit(b *testing.B, pid int) (anon, file int64) {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/smaps_rollup", pid))
	if err != nil {
		b.Fatal(err)
	}
	var rss int64 = -1
	anon = -1
	for _, line := range strings.Split(string(raw), "\n") {
		key, rest, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		kb, err := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
		if err != nil {
			continue
		}
		switch key {
		case "Rss":
			rss = kb << 10
		case "Anonymous":
			anon = kb << 10
		}
	}
	if rss < 0 || anon < 0 {
		b.Fatalf("no Rss or Anonymous line in /proc/%d/smaps_rollup:\n%s", pid, raw)
	}
	return anon, rss - anon
}

// processRSS is a process's resident memory in bytes (VmRSS).
func processRSS(b *testing.B, pid int) int64 {
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			return kb << 10
		}
	}
	b.Fatal("no VmRSS")
	return 0
}
