package main

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"slices"
	"strings"
	"testing"
)

// fullReport builds the report from every fixture, as `make bench` would
// with -machine, -sizes and -ratios.
func fullReport(t *testing.T, host *fakeHost) Report {
	t.Helper()
	c := parseFiles(t, "count3.txt", "verbose_count4.txt")
	m, _ := DescribeMachine(context.Background(), host.probe(), c, true)
	sizes := []Size{{"gitopsd-linux-amd64", 12 << 20, 12}, {"gitopsd-linux-armv7", 11<<20 + 300<<10, 11.29296875}}
	return BuildReport(c, m, sizes, readRatios(t, "ratios.txt"))
}

func markdown(t *testing.T, r Report) string {
	t.Helper()
	var b bytes.Buffer
	if err := WriteMarkdown(&b, r); err != nil {
		t.Fatal(err)
	}
	return b.String()
}

func TestMarkdownRows(t *testing.T) {
	md := markdown(t, fullReport(t, newFakeHost()))
	wantLines := []string{
		"# gitopsd benchmark report",
		"- Date (UTC): 2026-03-01T12:00:00Z",
		"- OS/arch: linux/amd64",
		"- CPU: AMD EPYC 7763 64-Core Processor",
		"- CPUs: 4",
		"- Memory: 3.84 GiB",
		"- Kernel: 6.8.0-50-generic",
		"- Go: go1.26.8",
		"- Docker engine: 29.1.3 (API 1.52)",
		"- Commit: v0.1.0-12-gabc1234-dirty",
		absoluteTimesNote,
		"### github.com/gitopsd/gitopsd/internal/daemon",
		"| Benchmark | metric | median | spread (min–max) | runs |",
		"| `BenchmarkHealDrift` | heal-s | 1.37 | ±5.11% (1.31–1.45) | 3 |",
		"| `BenchmarkHealDrift` | time/op | 1.4 s | ±4.62% (1.35–1.48 s) | 3 |",
		"| `BenchmarkHealDrift` | B/op | 52344 | ±0.451% (52016–52488) | 3 |",
		"| `BenchmarkHealDrift` | allocs/op | 611 | ±0.409% (608–613) | 3 |",
		"| `BenchmarkRoll/stacks=10/parallel=true` | failed-requests | 1 | ±100% (0–2) | 3 |",
		"| `BenchmarkRoll/stacks=1/parallel=true` | failed-requests | 0 | ±0% (0–0) | 3 |",
		"| `BenchmarkRoll/stacks=1/parallel=true` | MB/s | 145 | ±1.07% (144–147) | 3 |",
		"| `BenchmarkSnapshot/volume=10MiB` | MB/s | 26.2 | ±2.29% (25.8–27) | 4 |",
		"| `BenchmarkSnapshot/volume=10MiB` | ratio | 2.32 | ±1.29% (2.29–2.35) | 4 |",
		"| `BenchmarkOpen` | time/op | 1.23 µs | ±8.16% (1.1–1.3 µs) | 4 |",
		"| `BenchmarkOpen` | time/op | 812 µs | ±1.92% (799–830 µs) | 3 |",
		"| binary size gitopsd-linux-amd64 | 12 MiB | 1 |",
		"| binary size gitopsd-linux-armv7 | 11.3 MiB | 1 |",
		"| heal vs poll | 2.28 | 2.08–2.46 | `daemon.BenchmarkHealDrift:heal-s` / `daemon.BenchmarkPollOnly:heal-s` |",
		"| snapshot throughput 10 vs 1 MiB | 2.02 | 1.95–2.12 | `github.com/gitopsd/gitopsd/internal/backup.BenchmarkSnapshot/volume=10MiB:MB/s` / `internal/backup.BenchmarkSnapshot/volume=1MiB:MB/s` |",
		"| gone | n/a (missing daemon.BenchmarkGone:heal-s) | — | `daemon.BenchmarkGone:heal-s` / `daemon.BenchmarkHealDrift:heal-s` |",
		"| roll failed requests | n/a (denominator daemon.BenchmarkRoll/stacks=1/parallel=true:failed-requests has a zero median) | — |" +
			" `daemon.BenchmarkRoll/stacks=10/parallel=true:failed-requests` / `daemon.BenchmarkRoll/stacks=1/parallel=true:failed-requests` |",
		"| `BenchmarkVerify` | github.com/gitopsd/gitopsd/internal/backup | failed | backup_bench_test.go:90: verify snapshot 3: checksum mismatch |",
		"| `BenchmarkRestoreARM` | github.com/gitopsd/gitopsd/internal/backup | skipped | backup_bench_test.go:77: needs an arm64 host with zstd |",
		"| `BenchmarkEngineDown` | github.com/gitopsd/gitopsd/internal/daemon | failed | engine_bench_test.go:31: docker ping: Cannot connect to the Docker daemon at unix:///var/run/docker.sock |",
		"| `BenchmarkRestore` | github.com/gitopsd/gitopsd/internal/daemon | failed | restore_bench_test.go:22: restore web/data: snapshot 7 missing |",
	}
	lines := strings.Split(md, "\n")
	for _, want := range wantLines {
		if !slices.Contains(lines, want) {
			t.Errorf("Markdown lacks the line\n%s", want)
		}
	}
	if t.Failed() {
		t.Logf("Markdown:\n%s", md)
	}
	// A benchmark that never produced a figure is listed once, at the end.
	if strings.Contains(md, "| `BenchmarkEngineDown` | time/op") {
		t.Error("a failed benchmark without figures has a row in the figures table")
	}
}

func TestMarkdownOrder(t *testing.T) {
	md := markdown(t, fullReport(t, newFakeHost()))
	inOrder := []string{
		"## Machine",
		absoluteTimesNote,
		"### github.com/gitopsd/gitopsd/internal/backup",
		"| `BenchmarkSnapshot/volume=10MiB` | MB/s",
		"| `BenchmarkSnapshot/volume=10MiB` | ratio",
		"| `BenchmarkSnapshot/volume=10MiB` | time/op",
		"| `BenchmarkSnapshot/volume=1MiB` | MB/s",
		"### github.com/gitopsd/gitopsd/internal/daemon",
		"| `BenchmarkHealDrift` | heal-s",
		"| `BenchmarkHealDrift` | time/op",
		"| `BenchmarkHealDrift` | B/op",
		"| `BenchmarkHealDrift` | allocs/op",
		"| `BenchmarkPollOnly` | heal-s",
		"| `BenchmarkRoll/stacks=1/parallel=true` | MB/s",
		"| `BenchmarkRoll/stacks=10/parallel=true` | MB/s",
		"### github.com/gitopsd/gitopsd/internal/store",
		"## Binary sizes",
		"## Ratios",
		"## Failed and skipped benchmarks",
	}
	at := 0
	for _, want := range inOrder {
		i := strings.Index(md[at:], want)
		if i < 0 {
			t.Fatalf("%q missing or out of order in\n%s", want, md)
		}
		at += i + len(want)
	}
}

func TestMarkdownEngineUnknownAndUnprobed(t *testing.T) {
	host := newFakeHost()
	host.dockerErr = os.ErrPermission
	md := markdown(t, fullReport(t, host))
	if want := "- Docker engine: unknown (docker engine version: permission denied)"; !strings.Contains(md, want+"\n") {
		t.Errorf("Markdown lacks %q", want)
	}

	r := fullReport(t, host)
	r.Machine, _ = DescribeMachine(context.Background(), host.probe(), NewCollection(), false)
	md = markdown(t, r)
	if !strings.Contains(md, "The host was not probed") || strings.Contains(md, "- CPUs:") || !strings.Contains(md, "- CPU: unknown\n") {
		t.Errorf("unprobed machine section:\n%s", md[:strings.Index(md, "## Benchmarks")])
	}
}

func TestMarkdownEmptySectionsAndEscaping(t *testing.T) {
	c := NewCollection()
	c.Benchmarks[Key{"p", "BenchmarkPipe/a|b"}] = &Benchmark{Key: Key{"p", "BenchmarkPipe/a|b"}, Status: StatusSkipped, Reason: "needs | pipes", Values: map[string][]float64{}}
	md := markdown(t, BuildReport(c, Machine{}, nil, nil))
	for _, want := range []string{
		"No benchmark results.",
		"None measured (-sizes not given or the folder holds no files).",
		"None asked for (-ratios).",
		"| `BenchmarkPipe/a\\|b` | p | skipped | needs \\| pipes |",
	} {
		if !strings.Contains(md, want) {
			t.Errorf("Markdown lacks %q:\n%s", want, md)
		}
	}
}

func TestFailedParentGetsSubBenchmarkReason(t *testing.T) {
	c := NewCollection()
	if err := c.Parse(strings.NewReader("pkg: p\nBenchmarkTop/ok-2 \t 100\t 5 ns/op\n--- FAIL: BenchmarkTop/bad=1/x\n    x_test.go:13: boom\n--- FAIL: BenchmarkTop\nFAIL\n"), "raw"); err != nil {
		t.Fatal(err)
	}
	r := BuildReport(c, Machine{}, nil, nil)
	i := slices.IndexFunc(r.Benchmarks, func(b BenchmarkReport) bool { return b.Name == "BenchmarkTop" })
	if i < 0 || r.Benchmarks[i].Reason != "sub-benchmark BenchmarkTop/bad=1/x failed" {
		t.Errorf("benchmarks = %+v", r.Benchmarks)
	}
	if !r.Failed() {
		t.Error("Failed() = false")
	}
}

func TestJSONRoundTrip(t *testing.T) {
	r := fullReport(t, newFakeHost())
	var b bytes.Buffer
	if err := WriteJSON(&b, r); err != nil {
		t.Fatal(err)
	}
	var back Report
	if err := json.Unmarshal(b.Bytes(), &back); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(back, r) {
		t.Errorf("round trip changed the report:\n%s", b.String())
	}

	// The figures a machine reads, by name.
	type metric struct {
		Unit      string
		N         int
		Median    float64
		SpreadPct *float64 `json:"spread_pct"`
	}
	type benchmark struct {
		Package, Name, Status string
		Metrics               []metric
	}
	var doc struct{ Benchmarks []benchmark }
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	i := slices.IndexFunc(doc.Benchmarks, func(b benchmark) bool {
		return b.Package == backupPkg && b.Name == "BenchmarkSnapshot/volume=10MiB"
	})
	if i < 0 {
		t.Fatal("BenchmarkSnapshot/volume=10MiB not in the JSON")
	}
	got := doc.Benchmarks[i]
	if got.Status != "ok" || len(got.Metrics) != 3 || got.Metrics[0].Unit != "MB/s" || got.Metrics[0].N != 4 ||
		!near(got.Metrics[0].Median, 26.19) || got.Metrics[0].SpreadPct == nil || !near(*got.Metrics[0].SpreadPct, 0.6/26.19*100) {
		t.Errorf("snapshot = %+v", got)
	}
}

func TestJSONFieldNames(t *testing.T) {
	r := fullReport(t, newFakeHost())
	var b bytes.Buffer
	if err := WriteJSON(&b, r); err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	if err := json.Unmarshal(b.Bytes(), &doc); err != nil {
		t.Fatal(err)
	}
	checkKeys(t, "report", doc, "version", "machine", "benchmarks", "sizes", "ratios", "comparison")
	checkKeys(t, "machine", doc["machine"], "probed", "date", "goos", "goarch", "cpu_model", "cpus", "mem_total_bytes",
		"kernel", "go_version", "engine_version", "engine_api_version", "engine_error", "git_describe")
	benchmarks := doc["benchmarks"].([]any)
	for _, b := range benchmarks {
		checkKeys(t, "benchmark", b, "package", "name", "status", "reason", "metrics")
		for _, m := range b.(map[string]any)["metrics"].([]any) {
			checkKeys(t, "metric", m, "unit", "n", "median", "min", "max", "spread_pct", "values")
		}
	}
	checkKeys(t, "size", doc["sizes"].([]any)[0], "name", "bytes", "mib")
	for _, r := range doc["ratios"].([]any) {
		checkKeys(t, "ratio", r, "label", "value", "min", "max", "numerator", "denominator", "missing", "reason")
		checkKeys(t, "operand", r.(map[string]any)["numerator"], "ref", "package", "name", "unit", "n", "median")
	}
	if doc["version"] != float64(ReportVersion) {
		t.Errorf("version = %v", doc["version"])
	}
	// A missing figure is null, never a made-up number.
	gone := doc["ratios"].([]any)[3].(map[string]any)
	if gone["label"] != "gone" || gone["value"] != nil || gone["numerator"].(map[string]any)["median"] != nil {
		t.Errorf("gone = %v", gone)
	}
}

func checkKeys(t *testing.T, what string, v any, want ...string) {
	t.Helper()
	obj, ok := v.(map[string]any)
	if !ok {
		t.Errorf("%s is %T, want an object", what, v)
		return
	}
	var got []string
	for k := range obj {
		got = append(got, k)
	}
	slices.Sort(got)
	want = slices.Clone(want)
	slices.Sort(want)
	if !reflect.DeepEqual(got, want) {
		t.Errorf("%s keys = %q, want %q", what, got, want)
	}
}

func TestWriteReportCreatesFolders(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bench", "out", "report.md")
	if err := writeFile(path, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if data, err := os.ReadFile(path); err != nil || string(data) != "x" {
		t.Errorf("read back %q, %v", data, err)
	}
}
