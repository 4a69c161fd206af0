package main

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"time"
)

// Machine describes where the figures were measured: without it a time
// means nothing.
type Machine struct {
	Probed           bool   `json:"probed"`
	Date             string `json:"date"`
	GOOS             string `json:"goos"`
	GOARCH           string `json:"goarch"`
	CPUModel         string `json:"cpu_model"`
	CPUs             int    `json:"cpus"`
	MemTotalBytes    uint64 `json:"mem_total_bytes"`
	Kernel           string `json:"kernel"`
	GoVersion        string `json:"go_version"`
	EngineVersion    string `json:"engine_version"`
	EngineAPIVersion string `json:"engine_api_version"`
	EngineError      string `json:"engine_error"`
	GitDescribe      string `json:"git_describe"`
}

const unknown = "unknown"

// Probe is how the machine is observed, so tests can stand in for the
// host, Docker and git.
type Probe struct {
	NumCPU    func() int
	GoVersion func() string
	ReadFile  func(path string) ([]byte, error)
	// Run runs a command and returns its trimmed standard output.
	Run func(ctx context.Context, name string, args ...string) (string, error)
	Now func() time.Time
}

// HostProbe observes the machine this program runs on.
func HostProbe() Probe {
	return Probe{
		NumCPU:    runtime.NumCPU,
		GoVersion: runtime.Version,
		ReadFile:  os.ReadFile,
		Run:       runCommand,
		Now:       time.Now,
	}
}

// Commands get this long: a Docker daemon that does not answer must not
// hold the report back.
const commandTimeout = 15 * time.Second

// DescribeMachine fills what the raw output says (cpu:, goos:, goarch:)
// and, when probe is set, what the host says. Whatever the host will not
// tell is "unknown" plus a warning, never an error: a report without the
// kernel version beats no report.
func DescribeMachine(ctx context.Context, p Probe, c *Collection, probe bool) (Machine, []string) {
	m := Machine{
		Date:     p.Now().UTC().Format(time.RFC3339),
		GOOS:     c.GOOS,
		GOARCH:   c.GOARCH,
		CPUModel: c.CPU,
	}
	if !probe {
		return m, nil
	}
	var warnings []string
	warn := func(err error) { warnings = append(warnings, err.Error()) }

	m.Probed = true
	m.CPUs = p.NumCPU()
	m.GoVersion = p.GoVersion()
	if m.CPUModel == "" {
		model, err := cpuModel(p)
		if err != nil {
			warn(err)
		}
		m.CPUModel = model
	}
	mem, err := memTotal(p)
	if err != nil {
		warn(err)
	}
	m.MemTotalBytes = mem
	if m.Kernel, err = kernel(p); err != nil {
		warn(err)
	}
	if m.EngineVersion, m.EngineAPIVersion, err = engineVersion(ctx, p); err != nil {
		m.EngineError = err.Error()
		warn(err)
	}
	if m.GitDescribe, err = gitDescribe(ctx, p); err != nil {
		warn(err)
	}
	return m, warnings
}

func memTotal(p Probe) (uint64, error) {
	data, err := p.ReadFile("/proc/meminfo")
	if err != nil {
		return 0, fmt.Errorf("memory size: %w", err)
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		// MemTotal:       16314588 kB
		fields := strings.Fields(sc.Text())
		if len(fields) != 3 || fields[0] != "MemTotal:" || fields[2] != "kB" {
			continue
		}
		kb, err := strconv.ParseUint(fields[1], 10, 64)
		if err != nil {
			return 0, fmt.Errorf("memory size: /proc/meminfo MemTotal %q: %w", fields[1], err)
		}
		return kb * 1024, nil
	}
	return 0, fmt.Errorf("memory size: no MemTotal in /proc/meminfo")
}

func kernel(p Probe) (string, error) {
	data, err := p.ReadFile("/proc/sys/kernel/osrelease")
	if err != nil {
		return unknown, fmt.Errorf("kernel version: %w", err)
	}
	return strings.TrimSpace(string(data)), nil
}

// cpuModel reads /proc/cpuinfo, for when the raw output has no cpu: line.
// x86 names the model "model name"; arm kernels say "Model" or only
// "Hardware".
func cpuModel(p Probe) (string, error) {
	data, err := p.ReadFile("/proc/cpuinfo")
	if err != nil {
		return unknown, fmt.Errorf("CPU model: %w", err)
	}
	found := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for sc.Scan() {
		key, value, ok := strings.Cut(sc.Text(), ":")
		key = strings.TrimSpace(key)
		if ok && found[key] == "" {
			found[key] = strings.TrimSpace(value)
		}
	}
	for _, key := range []string{"model name", "Model", "Hardware"} {
		if found[key] != "" {
			return found[key], nil
		}
	}
	return unknown, fmt.Errorf("CPU model: not in /proc/cpuinfo")
}

func engineVersion(ctx context.Context, p Probe) (version, api string, err error) {
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	out, err := p.Run(ctx, "docker", "version", "--format", "{{.Server.Version}} {{.Server.APIVersion}}")
	if err != nil {
		return unknown, unknown, fmt.Errorf("docker engine version: %w", err)
	}
	fields := strings.Fields(out)
	if len(fields) != 2 {
		return unknown, unknown, fmt.Errorf("docker engine version: want \"VERSION API\", got %q", out)
	}
	return fields[0], fields[1], nil
}

func gitDescribe(ctx context.Context, p Probe) (string, error) {
	ctx, cancel := context.WithTimeout(ctx, commandTimeout)
	defer cancel()
	out, err := p.Run(ctx, "git", "describe", "--always", "--dirty")
	if err != nil {
		return unknown, fmt.Errorf("git describe: %w", err)
	}
	if out == "" {
		return unknown, errors.New("git describe: no output")
	}
	return out, nil
}

// runCommand runs name with args and returns its trimmed standard output;
// on failure the error carries the first line of standard error, which is
// where docker and git say why.
func runCommand(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		msg, _, _ := strings.Cut(strings.TrimSpace(stderr.String()), "\n")
		if msg != "" {
			return "", fmt.Errorf("%s: %w: %s", name, err, msg)
		}
		return "", fmt.Errorf("%s: %w", name, err)
	}
	return strings.TrimSpace(string(out)), nil
}
