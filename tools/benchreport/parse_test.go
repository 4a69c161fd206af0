package main

import (
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

const (
	daemonPkg = "github.com/gitopsd/gitopsd/internal/daemon"
	storePkg  = "github.com/gitopsd/gitopsd/internal/store"
	backupPkg = "github.com/gitopsd/gitopsd/internal/backup"
)

// parseFiles parses testdata files into one collection, as the program
// does with several RAW arguments.
func parseFiles(t *testing.T, names ...string) *Collection {
	t.Helper()
	c := NewCollection()
	for _, name := range names {
		f, err := os.Open(filepath.Join("testdata", name))
		if err != nil {
			t.Fatal(err)
		}
		if err := c.Parse(f, name); err != nil {
			t.Fatalf("parse %s: %v", name, err)
		}
		f.Close()
	}
	return c
}

func TestParseValues(t *testing.T) {
	c := parseFiles(t, "count3.txt", "verbose_count4.txt")
	tests := []struct {
		pkg, name, unit string
		want            []float64
	}{
		{daemonPkg, "BenchmarkHealDrift", "heal-s", []float64{1.37, 1.31, 1.45}},
		{daemonPkg, "BenchmarkHealDrift", "ns/op", []float64{1402318556, 1351002210, 1480553001}},
		{daemonPkg, "BenchmarkHealDrift", "B/op", []float64{52344, 52016, 52488}},
		{daemonPkg, "BenchmarkHealDrift", "allocs/op", []float64{611, 608, 613}},
		{daemonPkg, "BenchmarkRoll/stacks=10/parallel=true", "failed-requests", []float64{0, 2, 1}},
		{daemonPkg, "BenchmarkRoll/stacks=1/parallel=true", "MB/s", []float64{145.2, 143.9, 147}},
		{storePkg, "BenchmarkOpen", "ns/op", []float64{812345, 799001, 830222}},
		{backupPkg, "BenchmarkOpen", "ns/op", []float64{1200, 1300, 1100, 1250}},
		{backupPkg, "BenchmarkSnapshot/volume=10MiB", "MB/s", []float64{26.06, 26.32, 25.8, 27}},
		{backupPkg, "BenchmarkSnapshot/volume=1MiB", "ratio", []float64{2.1, 2.12, 2.09, 2.11}},
	}
	for _, tt := range tests {
		t.Run(tt.pkg+"."+tt.name+":"+tt.unit, func(t *testing.T) {
			b := c.Benchmarks[Key{Package: tt.pkg, Name: tt.name}]
			if b == nil {
				t.Fatalf("benchmark not parsed; have %v", keys(c))
			}
			if got := b.Values[tt.unit]; !reflect.DeepEqual(got, tt.want) {
				t.Errorf("values = %v, want %v", got, tt.want)
			}
		})
	}
}

func TestParseKeepsPackagesApartAndDropsProcs(t *testing.T) {
	c := parseFiles(t, "count3.txt", "verbose_count4.txt")
	want := []Key{
		{backupPkg, "BenchmarkOpen"},
		{backupPkg, "BenchmarkRestoreARM"},
		{backupPkg, "BenchmarkSnapshot/volume=10MiB"},
		{backupPkg, "BenchmarkSnapshot/volume=1MiB"},
		{backupPkg, "BenchmarkVerify"},
		{daemonPkg, "BenchmarkEngineDown"},
		{daemonPkg, "BenchmarkHealDrift"},
		{daemonPkg, "BenchmarkPollOnly"},
		{daemonPkg, "BenchmarkRestore"},
		{daemonPkg, "BenchmarkRoll/stacks=1/parallel=true"},
		{daemonPkg, "BenchmarkRoll/stacks=10/parallel=true"},
		{storePkg, "BenchmarkAppendEvent"},
		{storePkg, "BenchmarkOpen"},
	}
	if got := keys(c); !reflect.DeepEqual(got, want) {
		t.Errorf("benchmarks =\n%v\nwant\n%v", got, want)
	}
	if c.CPU != "AMD EPYC 7763 64-Core Processor" || c.GOOS != "linux" || c.GOARCH != "amd64" {
		t.Errorf("machine keys = %q %q %q", c.CPU, c.GOOS, c.GOARCH)
	}
}

func TestParseStatusAndReason(t *testing.T) {
	c := parseFiles(t, "count3.txt", "verbose_count4.txt")
	tests := []struct {
		pkg, name  string
		status     Status
		reason     string
		valueUnits int
	}{
		// Failing after the padded name, twice: the first run's first line.
		{daemonPkg, "BenchmarkEngineDown", StatusFailed, "engine_bench_test.go:31: docker ping: Cannot connect to the Docker daemon at unix:///var/run/docker.sock", 0},
		{daemonPkg, "BenchmarkRestore", StatusFailed, "restore_bench_test.go:22: restore web/data: snapshot 7 missing", 0},
		// -v: the reason comes before the FAIL/SKIP line.
		{backupPkg, "BenchmarkVerify", StatusFailed, "backup_bench_test.go:90: verify snapshot 3: checksum mismatch", 0},
		{backupPkg, "BenchmarkRestoreARM", StatusSkipped, "backup_bench_test.go:77: needs an arm64 host with zstd", 0},
		// b.Logf output after a result is not a reason.
		{daemonPkg, "BenchmarkHealDrift", StatusOK, "", 4},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := c.Benchmarks[Key{tt.pkg, tt.name}]
			if b == nil {
				t.Fatal("not recorded")
			}
			if b.Status != tt.status || b.Reason != tt.reason {
				t.Errorf("status, reason = %s, %q; want %s, %q", b.Status, b.Reason, tt.status, tt.reason)
			}
			if len(b.Values) != tt.valueUnits {
				t.Errorf("units = %d, want %d", len(b.Values), tt.valueUnits)
			}
		})
	}
}

func TestParseWarnsOnMalformedLines(t *testing.T) {
	c := parseFiles(t, "count3.txt")
	wantFragments := []string{
		"count3.txt:27: skipping malformed benchmark line",
		"count3.txt:28: skipping malformed benchmark line (value \"55\" has no unit)",
		"count3.txt:29: skipping malformed benchmark line (iterations \"abc\" is not a positive integer)",
	}
	if len(c.Warnings) != len(wantFragments) {
		t.Fatalf("warnings = %q, want %d", c.Warnings, len(wantFragments))
	}
	for i, want := range wantFragments {
		if !strings.Contains(c.Warnings[i], want) {
			t.Errorf("warning %d = %q, want it to contain %q", i, c.Warnings[i], want)
		}
	}
	for _, name := range []string{"BenchmarkTruncated", "BenchmarkOddFields", "BenchmarkBadIterations"} {
		if _, ok := c.Benchmarks[Key{daemonPkg, name}]; ok {
			t.Errorf("%s recorded from a malformed line", name)
		}
	}
}

func TestParseWarnsWhenFilesDisagreeOnMachine(t *testing.T) {
	c := parseFiles(t, "count3.txt", "all_ok.txt")
	if c.CPU != "AMD EPYC 7763 64-Core Processor" {
		t.Errorf("CPU = %q, want the first file's", c.CPU)
	}
	if !slices.ContainsFunc(c.Warnings, func(w string) bool { return strings.Contains(w, "disagree on cpu") }) {
		t.Errorf("no disagreement warning in %q", c.Warnings)
	}
}

func TestParseNoResults(t *testing.T) {
	c := NewCollection()
	if err := c.Parse(strings.NewReader("PASS\nok  \tx\t0.1s\n"), "empty.txt"); err != nil {
		t.Fatal(err)
	}
	if len(c.Benchmarks) != 0 || len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "empty.txt: no benchmark results") {
		t.Errorf("benchmarks %v, warnings %q", c.Benchmarks, c.Warnings)
	}
}

func TestParseWarnsOnPooledProcs(t *testing.T) {
	raw := "pkg: p\nBenchmarkX \t 10\t 5 ns/op\nBenchmarkX-4 \t 10\t 3 ns/op\n"
	c := NewCollection()
	if err := c.Parse(strings.NewReader(raw), "cpu.txt"); err != nil {
		t.Fatal(err)
	}
	if got := c.Benchmarks[Key{"p", "BenchmarkX"}].Values["ns/op"]; !reflect.DeepEqual(got, []float64{5, 3}) {
		t.Errorf("values = %v", got)
	}
	if len(c.Warnings) != 1 || !strings.Contains(c.Warnings[0], "several GOMAXPROCS") {
		t.Errorf("warnings = %q", c.Warnings)
	}
}

func TestParseNestedSubBenchmarkFailure(t *testing.T) {
	// go test indents a failed sub-benchmark under its failed parent.
	raw := strings.Join([]string{
		"pkg: example.com/p",
		"--- FAIL: BenchmarkTop",
		"    --- FAIL: BenchmarkTop/bad=1/x",
		"        x_test.go:13: first reason",
		"        x_test.go:14: second reason",
		"FAIL",
	}, "\n")
	c := NewCollection()
	if err := c.Parse(strings.NewReader(raw), "nested.txt"); err != nil {
		t.Fatal(err)
	}
	parent := c.Benchmarks[Key{"example.com/p", "BenchmarkTop"}]
	child := c.Benchmarks[Key{"example.com/p", "BenchmarkTop/bad=1/x"}]
	if parent == nil || child == nil {
		t.Fatalf("have %v", keys(c))
	}
	if parent.Status != StatusFailed || parent.Reason != "" {
		t.Errorf("parent = %s %q, want failed without a reason of its own", parent.Status, parent.Reason)
	}
	if child.Status != StatusFailed || child.Reason != "x_test.go:13: first reason" {
		t.Errorf("child = %s %q", child.Status, child.Reason)
	}
}

func TestParseResult(t *testing.T) {
	tests := []struct {
		line      string
		wantName  string
		wantProcs string
		want      []unitValue
		wantErr   string
	}{
		{"BenchmarkX-8 \t 100\t 12.5 ns/op", "BenchmarkX", "8", []unitValue{{"ns/op", 12.5}}, ""},
		{"BenchmarkRoll/stacks=10/parallel=true-2 1 3 ns/op 1.37 heal-s 0 failed-requests", "BenchmarkRoll/stacks=10/parallel=true", "2",
			[]unitValue{{"ns/op", 3}, {"heal-s", 1.37}, {"failed-requests", 0}}, ""},
		{"BenchmarkNoProcs 5 1e3 ns/op", "BenchmarkNoProcs", "", []unitValue{{"ns/op", 1000}}, ""},
		{"BenchmarkSub/a-b 5 1 x", "BenchmarkSub/a-b", "", []unitValue{{"x", 1}}, ""},
		{"BenchmarkX-2 0 1 ns/op", "", "", nil, "iterations"},
		{"BenchmarkX-2 10 1", "", "", nil, "want name, iterations"},
		{"BenchmarkX-2 10 1 ns/op 2", "", "", nil, "has no unit"},
		{"BenchmarkX-2 10 fast ns/op", "", "", nil, "not a finite number"},
		{"BenchmarkX-2 10 NaN ns/op", "", "", nil, "not a finite number"},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			name, procs, values, err := parseResult(strings.Fields(tt.line))
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if name != tt.wantName || procs != tt.wantProcs || !reflect.DeepEqual(values, tt.want) {
				t.Errorf("got %q %q %v, want %q %q %v", name, procs, values, tt.wantName, tt.wantProcs, tt.want)
			}
		})
	}
}

func TestLineClassifiers(t *testing.T) {
	names := map[string]bool{
		"Benchmark": true, "BenchmarkX": true, "Benchmark_x": true, "BenchmarkÉté": true,
		"Benchmarking": false, "benchmarkX": false, "TestX": false, "": false,
	}
	for name, want := range names {
		if got := isBenchmarkName(name); got != want {
			t.Errorf("isBenchmarkName(%q) = %v, want %v", name, got, want)
		}
	}

	configs := []struct {
		line, key, value string
		ok               bool
	}{
		{"pkg: github.com/gitopsd/gitopsd/internal/daemon", "pkg", "github.com/gitopsd/gitopsd/internal/daemon", true},
		{"cpu: AMD EPYC 7763 64-Core Processor   ", "cpu", "AMD EPYC 7763 64-Core Processor", true},
		{"Pkg: x", "", "", false},
		{"some words: x", "", "", false},
		{"PASS", "", "", false},
	}
	for _, tt := range configs {
		key, value, ok := configLine(tt.line)
		if key != tt.key || value != tt.value || ok != tt.ok {
			t.Errorf("configLine(%q) = %q %q %v", tt.line, key, value, ok)
		}
	}

	statuses := []struct {
		line   string
		status Status
		name   string
		ok     bool
	}{
		{"--- FAIL: BenchmarkX-2", StatusFailed, "BenchmarkX-2", true},
		{"--- SKIP: BenchmarkX/y=1", StatusSkipped, "BenchmarkX/y=1", true},
		{"BenchmarkX-2   \t--- FAIL: BenchmarkX-2", StatusFailed, "BenchmarkX-2", true},
		{"--- FAIL: TestX (0.00s)", "", "", false},
		{"--- BENCH: BenchmarkX-2", "", "", false},
		{"x_test.go:3: saw --- FAIL: BenchmarkY", "", "", false},
	}
	for _, tt := range statuses {
		status, name, ok := statusLine(tt.line)
		if status != tt.status || name != tt.name || ok != tt.ok {
			t.Errorf("statusLine(%q) = %q %q %v", tt.line, status, name, ok)
		}
	}

	procs := map[string][2]string{
		"BenchmarkX-16":    {"BenchmarkX", "16"},
		"BenchmarkX":       {"BenchmarkX", ""},
		"BenchmarkX/a-b":   {"BenchmarkX/a-b", ""},
		"BenchmarkX/n=-1":  {"BenchmarkX/n=", "1"}, // ambiguous by design of the format
		"BenchmarkX-":      {"BenchmarkX-", ""},
		"BenchmarkX/a-2-4": {"BenchmarkX/a-2", "4"},
	}
	for in, want := range procs {
		name, p := splitProcs(in)
		if name != want[0] || p != want[1] {
			t.Errorf("splitProcs(%q) = %q %q, want %q %q", in, name, p, want[0], want[1])
		}
	}
}

func keys(c *Collection) []Key {
	var ks []Key
	for k := range c.Benchmarks {
		ks = append(ks, k)
	}
	slices.SortFunc(ks, func(a, b Key) int {
		return strings.Compare(a.Package+"\x00"+a.Name, b.Package+"\x00"+b.Name)
	})
	return ks
}
