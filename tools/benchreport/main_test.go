package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRunExitStatus(t *testing.T) {
	td := func(name string) string { return filepath.Join("testdata", name) }
	tests := []struct {
		name       string
		args       []string // -md and -json are added when wantReport
		stdin      string
		wantStatus int
		wantReport bool
		wantStderr []string
	}{
		{
			name: "all benchmarks ok", args: []string{td("all_ok.txt")},
			wantStatus: 0, wantReport: true,
		},
		{
			name: "a benchmark failed", args: []string{"-ratios", td("ratios.txt"), td("count3.txt"), td("verbose_count4.txt")},
			wantStatus: 1, wantReport: true,
			wantStderr: []string{"warning: testdata/count3.txt:27: skipping malformed benchmark line", "some benchmarks failed; see "},
		},
		{
			name: "only a skip is not a failure", args: []string{"-"},
			stdin:      "pkg: p\nBenchmarkA-2 \t 10\t 5 ns/op\n--- SKIP: BenchmarkB\n    b_test.go:3: no engine\n",
			wantStatus: 0, wantReport: true,
		},
		{
			name: "failure read from stdin", args: []string{"-"},
			stdin:      "pkg: p\nBenchmarkA-2 \t--- FAIL: BenchmarkA-2\n    a_test.go:3: boom\n",
			wantStatus: 1, wantReport: true,
		},
		{
			name: "raw file missing", args: []string{td("absent.txt")},
			wantStatus: 2, wantStderr: []string{"read raw benchmark output: open testdata/absent.txt"},
		},
		{
			name: "bad ratios file", args: []string{"-ratios", td("bad_ratios.txt"), td("all_ok.txt")},
			wantStatus: 2, wantStderr: []string{`bad_ratios.txt:2: ratio "no slash"`},
		},
		{
			name: "sizes folder missing", args: []string{"-sizes", td("no-such-dist"), td("all_ok.txt")},
			wantStatus: 2, wantStderr: []string{"read sizes folder"},
		},
		{
			name: "no raw file", args: []string{},
			wantStatus: 2, wantStderr: []string{"no raw benchmark output given"},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := t.TempDir()
			md, js := filepath.Join(dir, "out", "bench.md"), filepath.Join(dir, "out", "bench.json")
			args := append([]string{"-md", md, "-json", js}, tt.args...)
			var stderr bytes.Buffer
			status := run(context.Background(), args, strings.NewReader(tt.stdin), &stderr, newFakeHost().probe())
			if status != tt.wantStatus {
				t.Errorf("status = %d, want %d; stderr:\n%s", status, tt.wantStatus, stderr.String())
			}
			for _, want := range tt.wantStderr {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("stderr lacks %q:\n%s", want, stderr.String())
				}
			}
			for _, path := range []string{md, js} {
				_, err := os.Stat(path)
				if tt.wantReport && err != nil {
					t.Errorf("report not written: %v", err)
				}
				if !tt.wantReport && err == nil {
					t.Errorf("%s written despite the error", path)
				}
			}
		})
	}
}

func TestRunRequiresOutputs(t *testing.T) {
	tests := map[string][]string{
		"-md PATH is required":                {"-json", "x.json", "raw.txt"},
		"-json PATH is required":              {"-md", "x.md", "raw.txt"},
		"flag provided but not defined: -csv": {"-csv", "x", "raw.txt"},
	}
	for want, args := range tests {
		var stderr bytes.Buffer
		if status := run(context.Background(), args, strings.NewReader(""), &stderr, newFakeHost().probe()); status != 2 {
			t.Errorf("%q: status = %d, want 2", args, status)
		}
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("%q: stderr lacks %q:\n%s", args, want, stderr.String())
		}
	}
	var stderr bytes.Buffer
	if status := run(context.Background(), []string{"-h"}, strings.NewReader(""), &stderr, newFakeHost().probe()); status != 0 || !strings.Contains(stderr.String(), "usage: benchreport") {
		t.Errorf("-h: status %d, stderr %q", status, stderr.String())
	}
}

func TestRunWritesBothReports(t *testing.T) {
	dir := t.TempDir()
	dist := filepath.Join(dir, "dist")
	if err := os.Mkdir(dist, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dist, "gitopsd-linux-arm64"), make([]byte, 3<<19), 0o755); err != nil {
		t.Fatal(err)
	}
	md, js := filepath.Join(dir, "bench.md"), filepath.Join(dir, "bench.json")
	host := newFakeHost()
	host.dockerErr = os.ErrNotExist
	var stderr bytes.Buffer
	args := []string{"-md", md, "-json", js, "-machine", "-sizes", dist, "-ratios", filepath.Join("testdata", "ratios.txt"),
		filepath.Join("testdata", "count3.txt"), filepath.Join("testdata", "verbose_count4.txt")}
	if status := run(context.Background(), args, strings.NewReader(""), &stderr, host.probe()); status != 1 {
		t.Fatalf("status = %d, want 1; stderr:\n%s", status, stderr.String())
	}
	if !strings.Contains(stderr.String(), "warning: docker engine version: file does not exist") {
		t.Errorf("stderr lacks the engine warning:\n%s", stderr.String())
	}

	mdText, err := os.ReadFile(md)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"- Docker engine: unknown (docker engine version: file does not exist)\n",
		"| binary size gitopsd-linux-arm64 | 1.5 MiB | 1 |\n",
		"| heal vs poll | 2.28 | 2.08–2.46 |",
		"| `BenchmarkVerify` | github.com/gitopsd/gitopsd/internal/backup | failed |",
	} {
		if !strings.Contains(string(mdText), want) {
			t.Errorf("Markdown lacks %q", want)
		}
	}

	data, err := os.ReadFile(js)
	if err != nil {
		t.Fatal(err)
	}
	var r Report
	if err := json.Unmarshal(data, &r); err != nil {
		t.Fatalf("JSON report does not parse: %v", err)
	}
	if !r.Machine.Probed || r.Machine.EngineVersion != unknown || r.Machine.EngineError == "" {
		t.Errorf("machine = %+v", r.Machine)
	}
	if len(r.Sizes) != 1 || r.Sizes[0].Bytes != 3<<19 || r.Sizes[0].MiB != 1.5 {
		t.Errorf("sizes = %+v", r.Sizes)
	}
	if len(r.Ratios) != 6 || r.Ratios[0].Value == nil || !near(*r.Ratios[0].Value, 1.37/0.6) {
		t.Errorf("ratios = %+v", r.Ratios)
	}
	if len(r.Benchmarks) != 13 || !r.Failed() {
		t.Errorf("%d benchmarks, failed %v", len(r.Benchmarks), r.Failed())
	}
}
