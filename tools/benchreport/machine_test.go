package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"strings"
	"testing"
	"time"
)

// fakeHost stands in for the host, Docker and git.
type fakeHost struct {
	files     map[string]string
	dockerOut string
	dockerErr error
	gitErr    error
	commands  []string
}

func newFakeHost() *fakeHost {
	return &fakeHost{
		files: map[string]string{
			"/proc/meminfo":              "MemTotal:        4030464 kB\nMemFree:          512000 kB\n",
			"/proc/sys/kernel/osrelease": "6.8.0-50-generic\n",
			"/proc/cpuinfo":              "processor\t: 0\nvendor_id\t: GenuineIntel\nmodel name\t: Intel(R) Core(TM) i5-8250U CPU @ 1.60GHz\n",
		},
		dockerOut: "29.1.3 1.52",
	}
}

var fakeNow = time.Date(2026, 3, 1, 13, 0, 0, 0, time.FixedZone("CET", 3600))

func (h *fakeHost) probe() Probe {
	return Probe{
		NumCPU:    func() int { return 4 },
		GoVersion: func() string { return "go1.26.8" },
		ReadFile: func(path string) ([]byte, error) {
			data, ok := h.files[path]
			if !ok {
				return nil, fmt.Errorf("open %s: %w", path, fs.ErrNotExist)
			}
			return []byte(data), nil
		},
		Run: func(ctx context.Context, name string, args ...string) (string, error) {
			if _, ok := ctx.Deadline(); !ok {
				return "", errors.New("command run without a deadline")
			}
			h.commands = append(h.commands, strings.Join(append([]string{name}, args...), " "))
			switch name {
			case "docker":
				return h.dockerOut, h.dockerErr
			case "git":
				return "v0.1.0-12-gabc1234-dirty", h.gitErr
			}
			return "", fmt.Errorf("unexpected command %s", name)
		},
		Now: func() time.Time { return fakeNow },
	}
}

func TestDescribeMachine(t *testing.T) {
	host := newFakeHost()
	c := NewCollection()
	c.CPU, c.GOOS, c.GOARCH = "AMD EPYC 7763 64-Core Processor", "linux", "amd64"
	m, warnings := DescribeMachine(context.Background(), host.probe(), c, true)
	want := Machine{
		Probed: true, Date: "2026-03-01T12:00:00Z", GOOS: "linux", GOARCH: "amd64",
		CPUModel: "AMD EPYC 7763 64-Core Processor", CPUs: 4, MemTotalBytes: 4030464 * 1024,
		Kernel: "6.8.0-50-generic", GoVersion: "go1.26.8",
		EngineVersion: "29.1.3", EngineAPIVersion: "1.52", GitDescribe: "v0.1.0-12-gabc1234-dirty",
	}
	if m != want {
		t.Errorf("machine =\n%+v\nwant\n%+v", m, want)
	}
	if len(warnings) != 0 {
		t.Errorf("warnings = %q", warnings)
	}
	wantCommands := []string{
		"docker version --format {{.Server.Version}} {{.Server.APIVersion}}",
		"git describe --always --dirty",
	}
	if strings.Join(host.commands, "\n") != strings.Join(wantCommands, "\n") {
		t.Errorf("commands = %q, want %q", host.commands, wantCommands)
	}
}

func TestDescribeMachineFallbacksAndFailures(t *testing.T) {
	tests := []struct {
		name   string
		change func(h *fakeHost)
		check  func(t *testing.T, m Machine)
		warn   string
	}{
		{
			name: "docker fails",
			change: func(h *fakeHost) {
				h.dockerErr = errors.New("docker: exit status 1: Cannot connect to the Docker daemon")
			},
			check: func(t *testing.T, m Machine) {
				if m.EngineVersion != unknown || m.EngineAPIVersion != unknown ||
					m.EngineError != "docker engine version: docker: exit status 1: Cannot connect to the Docker daemon" {
					t.Errorf("engine = %q %q %q", m.EngineVersion, m.EngineAPIVersion, m.EngineError)
				}
			},
			warn: "Cannot connect to the Docker daemon",
		},
		{
			name:   "docker says something odd",
			change: func(h *fakeHost) { h.dockerOut = "" },
			check: func(t *testing.T, m Machine) {
				if m.EngineVersion != unknown || !strings.Contains(m.EngineError, `want "VERSION API"`) {
					t.Errorf("engine = %q, error %q", m.EngineVersion, m.EngineError)
				}
			},
			warn: "docker engine version",
		},
		{
			name:   "not a git work tree",
			change: func(h *fakeHost) { h.gitErr = errors.New("git: exit status 128: fatal: not a git repository") },
			check: func(t *testing.T, m Machine) {
				if m.GitDescribe != unknown {
					t.Errorf("git describe = %q", m.GitDescribe)
				}
			},
			warn: "git describe: git: exit status 128",
		},
		{
			name:   "no cpu line in the raw output",
			change: func(h *fakeHost) {},
			check: func(t *testing.T, m Machine) {
				if m.CPUModel != "Intel(R) Core(TM) i5-8250U CPU @ 1.60GHz" {
					t.Errorf("CPU model = %q, want /proc/cpuinfo's", m.CPUModel)
				}
			},
		},
		{
			name: "arm cpuinfo",
			change: func(h *fakeHost) {
				h.files["/proc/cpuinfo"] = "processor\t: 0\nBogoMIPS\t: 108.00\nHardware\t: BCM2835\nModel\t\t: Raspberry Pi 4 Model B Rev 1.4\n"
			},
			check: func(t *testing.T, m Machine) {
				if m.CPUModel != "Raspberry Pi 4 Model B Rev 1.4" {
					t.Errorf("CPU model = %q", m.CPUModel)
				}
			},
		},
		{
			name:   "no proc",
			change: func(h *fakeHost) { h.files = map[string]string{} },
			check: func(t *testing.T, m Machine) {
				if m.MemTotalBytes != 0 || m.Kernel != unknown || m.CPUModel != unknown {
					t.Errorf("mem %d, kernel %q, cpu %q", m.MemTotalBytes, m.Kernel, m.CPUModel)
				}
			},
			warn: "memory size: open /proc/meminfo",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			host := newFakeHost()
			tt.change(host)
			m, warnings := DescribeMachine(context.Background(), host.probe(), NewCollection(), true)
			tt.check(t, m)
			joined := strings.Join(warnings, "\n")
			if tt.warn == "" && joined != "" {
				t.Errorf("warnings = %q, want none", warnings)
			}
			if !strings.Contains(joined, tt.warn) {
				t.Errorf("warnings = %q, want one with %q", warnings, tt.warn)
			}
		})
	}
}

func TestDescribeMachineWithoutProbing(t *testing.T) {
	host := newFakeHost()
	c := NewCollection()
	c.CPU = "AMD EPYC 7763 64-Core Processor"
	m, warnings := DescribeMachine(context.Background(), host.probe(), c, false)
	want := Machine{Date: "2026-03-01T12:00:00Z", CPUModel: "AMD EPYC 7763 64-Core Processor"}
	if m != want || len(warnings) != 0 {
		t.Errorf("machine = %+v, warnings %q; want %+v", m, warnings, want)
	}
	if len(host.commands) != 0 {
		t.Errorf("ran %q without -machine", host.commands)
	}
}
