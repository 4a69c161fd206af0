package main

import (
	"bufio"
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/gitopsd/gitopsd/internal/testenv"
)

// BenchmarkSoak runs the gitopsd binary for GITOPSD_BENCH_SOAK (default
// 30m; CI runs 1m) under what an unattended host sees, in a random order
// from a fixed seed: commits to its stacks, containers stopped by hand,
// and snapshots. Every few seconds it samples the daemon's resident
// memory, goroutines (from its own /metrics) and open files. The figures
// are each sample's median over the first and the last third of the run,
// and its maximum: a leak shows as a last third above the first. Only
// leaks of goroutines and open files fail it (the last third's lowest
// sample above the first third's highest by a wide margin); memory is
// reported, never judged, since the Go heap breathes. Run it once
// (-benchtime=1x).
func BenchmarkSoak(b *testing.B) {
	soak := 30 * time.Minute
	if v := os.Getenv("GITOPSD_BENCH_SOAK"); v != "" {
		var err error
		if soak, err = time.ParseDuration(v); err != nil {
			b.Fatalf("GITOPSD_BENCH_SOAK: %v", err)
		}
	}
	cli := testenv.Docker(b)
	image := testenv.AppImage(b, "gitopsd-test-soak:"+testenv.UniqueName(b, "v"))
	repo := testenv.NewGitRepo(b)
	prefix := testenv.UniqueName(b, "soak")
	webs := []string{prefix + "-web1", prefix + "-web2"}
	data := prefix + "-data"
	testenv.CleanupProjects(b, append(slices.Clone(webs), data)...)

	versions := map[string]int{}
	files := func() map[string]string {
		f := map[string]string{}
		for _, name := range webs {
			f["stacks/"+name+"/compose.yaml"] = fmt.Sprintf("services:\n  web:\n    image: %s\n    pull_policy: never\n    environment: {VERSION: v%d}\n    deploy: {replicas: 2, update_config: {monitor: 200ms}}\n    labels: {%s: \"1\"}\n%s",
				image, versions[name], testenv.TestLabel, testenv.LabelledDefault())
		}
		f["stacks/"+data+"/compose.yaml"] = testenv.BackupStack(image, 3)
		return f
	}
	repo.Commit(b, "soak", files())

	state := b.TempDir()
	sock := filepath.Join(state, "gitopsd.sock")
	cfg := filepath.Join(state, "gitopsd.yaml")
	metrics := fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(b))
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("source: {url: %s, interval: 1h}\nhost: {name: testhost}\nstate_dir: %s\nsocket: %s\nmetrics: %q\n",
		repo.Bare, state, sock, metrics)), 0o644); err != nil {
		b.Fatal(err)
	}

	for b.Loop() {
		cmd := exec.Command(binary, "run", "--config", cfg)
		logs, err := os.Create(filepath.Join(state, "daemon.log"))
		if err != nil {
			b.Fatal(err)
		}
		cmd.Stdout, cmd.Stderr = logs, logs
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() {
			_ = cmd.Process.Kill()
			_ = cmd.Wait()
			logs.Close()
			if b.Failed() {
				out, _ := os.ReadFile(logs.Name())
				b.Logf("daemon log:\n%s", tail(string(out), 60))
			}
		})
		for deadline := time.Now().Add(time.Minute); ; {
			if _, err := os.Stat(sock); err == nil {
				break
			}
			if time.Now().After(deadline) {
				b.Fatal("the daemon's socket did not appear")
			}
			time.Sleep(50 * time.Millisecond) // polling for a file: no event to wait on
		}
		soakCLI(b, sock, time.Minute, "sync", "--wait")

		var samples []soakSample
		var mu sync.Mutex
		stop := make(chan struct{})
		sampled := make(chan struct{})
		every := max(soak/60, 2*time.Second)
		go func() {
			defer close(sampled)
			t := time.NewTicker(every)
			defer t.Stop()
			for {
				s, err := sampleDaemon(cmd.Process.Pid, metrics)
				mu.Lock()
				if err == nil {
					samples = append(samples, s)
				}
				mu.Unlock()
				select {
				case <-stop:
					return
				case <-t.C:
				}
			}
		}()

		rng := rand.New(rand.NewPCG(1, 2))
		counts := map[string]int{}
		end := time.Now().Add(soak)
		for time.Now().Before(end) {
			switch rng.IntN(3) {
			case 0: // a commit to one web stack
				name := webs[rng.IntN(len(webs))]
				versions[name]++
				repo.Commit(b, "soak: "+name, files())
				soakCLI(b, sock, 2*time.Minute, "sync", "--wait")
				counts["commits"]++
			case 1: // a container stopped by hand, healed by the daemon
				name := append(slices.Clone(webs), data)[rng.IntN(3)]
				stopAndAwaitHeal(b, cli, name)
				counts["heals"]++
			case 2: // a snapshot
				soakCLI(b, sock, 2*time.Minute, "backup", "run", data, "data", "--wait")
				counts["snapshots"]++
			}
			if cmd.ProcessState != nil {
				b.Fatal("the daemon exited during the soak")
			}
		}
		close(stop)
		<-sampled

		mu.Lock()
		defer mu.Unlock()
		if len(samples) < 3 {
			b.Fatalf("only %d samples of the daemon in %s", len(samples), soak)
		}
		third := len(samples) / 3
		first, last := samples[:third], samples[len(samples)-third:]
		report := func(unit string, pick func(soakSample) float64) (firstMedian, lastMedian, firstMax, lastMin float64) {
			firstMedian, lastMedian = median(first, pick), median(last, pick)
			all := make([]float64, 0, len(samples))
			for _, s := range samples {
				all = append(all, pick(s))
			}
			b.ReportMetric(firstMedian, unit+"-first-third")
			b.ReportMetric(lastMedian, unit+"-last-third")
			b.ReportMetric(slices.Max(all), unit+"-max")
			firstMax, lastMin = slices.Max(values(first, pick)), slices.Min(values(last, pick))
			return
		}
		report("MiB-rss", func(s soakSample) float64 { return float64(s.rss) / (1 << 20) })
		_, _, gMax, gLastMin := report("goroutines", func(s soakSample) float64 { return float64(s.goroutines) })
		_, _, fMax, fLastMin := report("open-files", func(s soakSample) float64 { return float64(s.files) })
		b.ReportMetric(float64(counts["commits"]), "commits")
		b.ReportMetric(float64(counts["heals"]), "heals")
		b.ReportMetric(float64(counts["snapshots"]), "snapshots")
		b.Logf("soak of %s: %d samples every %s; %v", soak, len(samples), every, counts)
		// Go shows a benchmark's first lines of log only: eight samples
		// spread over the run tell the curve.
		for i := 0; i < 8; i++ {
			s := samples[i*(len(samples)-1)/7]
			b.Logf("at %s: RSS %.1f MiB, %d goroutines, %d open files", s.at.Round(time.Second), float64(s.rss)/(1<<20), s.goroutines, s.files)
		}
		// A leak grows with every action; a wide margin keeps a busy moment
		// at the end (a roll in flight) from passing for one.
		if gLastMin > 2*gMax+50 {
			b.Errorf("goroutines grow: the last third never fell below %.0f, the first third peaked at %.0f", gLastMin, gMax)
		}
		if fLastMin > 2*fMax+20 {
			b.Errorf("open files grow: the last third never fell below %.0f, the first third peaked at %.0f", fLastMin, fMax)
		}
	}
}

type soakSample struct {
	at         time.Duration
	rss        int64
	goroutines int
	files      int
}

var soakStart = time.Now()

// sampleDaemon reads the daemon's resident memory and open files from /proc
// and its goroutines from its own metrics.
func sampleDaemon(pid int, metricsAddr string) (soakSample, error) {
	s := soakSample{at: time.Since(soakStart)}
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return s, err
	}
	for _, line := range strings.Split(string(status), "\n") {
		if rest, ok := strings.CutPrefix(line, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 10, 64)
			s.rss = kb << 10
		}
	}
	fds, err := os.ReadDir(fmt.Sprintf("/proc/%d/fd", pid))
	if err != nil {
		return s, err
	}
	s.files = len(fds)
	resp, err := (&http.Client{Timeout: 5 * time.Second}).Get("http://" + metricsAddr + "/metrics")
	if err != nil {
		return s, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if rest, ok := strings.CutPrefix(sc.Text(), "go_goroutines "); ok {
			s.goroutines, _ = strconv.Atoi(strings.TrimSpace(rest))
			return s, nil
		}
	}
	return s, fmt.Errorf("no go_goroutines in the daemon's metrics")
}

// soakCLI runs one CLI command against the daemon and fails the benchmark
// if it fails or takes longer than limit.
func soakCLI(b *testing.B, sock string, limit time.Duration, argv ...string) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), limit)
	defer cancel()
	out, err := exec.CommandContext(ctx, binary, append(argv, "--socket", sock)...).CombinedOutput()
	if err != nil {
		b.Fatalf("gitopsd %s: %v\n%s", strings.Join(argv, " "), err, out)
	}
}

// stopAndAwaitHeal stops one running container of project and waits until
// the project has as many running containers as before.
func stopAndAwaitHeal(b *testing.B, cli *client.Client, project string) {
	b.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	running := func() []string {
		list, err := cli.ContainerList(ctx, client.ContainerListOptions{Filters: make(client.Filters).Add("label", "com.docker.compose.project="+project).Add("status", "running")})
		if err != nil {
			b.Fatal(err)
		}
		ids := make([]string, 0, len(list.Items))
		for _, c := range list.Items {
			ids = append(ids, c.ID)
		}
		return ids
	}
	before := running()
	if len(before) == 0 {
		b.Fatalf("no running container of %s to stop", project)
	}
	if _, err := cli.ContainerStop(ctx, before[0], client.ContainerStopOptions{}); err != nil {
		b.Fatal(err)
	}
	for len(running()) < len(before) {
		if ctx.Err() != nil {
			b.Fatalf("%s was not healed within 2m", project)
		}
		time.Sleep(100 * time.Millisecond) // polling the engine: the heal is the daemon's, not an event of ours
	}
}

func values(s []soakSample, pick func(soakSample) float64) []float64 {
	v := make([]float64, 0, len(s))
	for _, x := range s {
		v = append(v, pick(x))
	}
	return v
}

func median(s []soakSample, pick func(soakSample) float64) float64 {
	v := values(s, pick)
	slices.Sort(v)
	return v[len(v)/2]
}

// tail is the last n lines of s.
func tail(s string, n int) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	if len(lines) > n {
		lines = lines[len(lines)-n:]
	}
	return strings.Join(lines, "\n")
}
