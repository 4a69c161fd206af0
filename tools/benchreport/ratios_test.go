package main

import (
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

func TestParseRatioLine(t *testing.T) {
	tests := []struct {
		line    string
		want    RatioSpec
		wantErr string
	}{
		{
			line: "heal vs poll = daemon.BenchmarkHealDrift:heal-s / daemon.BenchmarkPollOnly:heal-s",
			want: RatioSpec{"heal vs poll",
				Operand{"daemon.BenchmarkHealDrift:heal-s", "daemon", "BenchmarkHealDrift", "heal-s"},
				Operand{"daemon.BenchmarkPollOnly:heal-s", "daemon", "BenchmarkPollOnly", "heal-s"}},
		},
		{
			line: "snapshots = github.com/gitopsd/gitopsd/internal/backup.BenchmarkSnapshot/volume=10MiB:MB/s / BenchmarkSnapshot/host:port:MB/s",
			want: RatioSpec{"snapshots",
				Operand{"github.com/gitopsd/gitopsd/internal/backup.BenchmarkSnapshot/volume=10MiB:MB/s", "github.com/gitopsd/gitopsd/internal/backup", "BenchmarkSnapshot/volume=10MiB", "MB/s"},
				Operand{"BenchmarkSnapshot/host:port:MB/s", "", "BenchmarkSnapshot/host:port", "MB/s"}},
		},
		// A label ends at the first "=", so one holding "=" breaks the line.
		{line: "mb=s = backup.BenchmarkA:MB/s / backup.BenchmarkB:MB/s", wantErr: `numerator: "s = backup.BenchmarkA:MB/s"`},
		{line: "no label here", wantErr: "want \"LABEL = "},
		{line: " = daemon.BenchmarkA:x / daemon.BenchmarkB:x", wantErr: "want \"LABEL = "},
		{line: "tight = daemon.BenchmarkA:x/daemon.BenchmarkB:x", wantErr: "a space each side"},
		{line: "no unit = daemon.BenchmarkA / daemon.BenchmarkB:x", wantErr: "numerator: \"daemon.BenchmarkA\": want PKG.BenchmarkName:unit"},
		{line: "empty unit = daemon.BenchmarkA: / daemon.BenchmarkB:x", wantErr: "numerator"},
		{line: "no name = daemon.BenchmarkA:x / daemon.Test:x", wantErr: "denominator: \"daemon.Test:x\": no benchmark name"},
		{line: "lower = daemon.BenchmarkA:x / daemon.Benchmarking:x", wantErr: "is not a benchmark name"},
	}
	for _, tt := range tests {
		t.Run(tt.line, func(t *testing.T) {
			got, err := parseRatioLine(tt.line)
			if tt.wantErr != "" {
				if err == nil || !strings.Contains(err.Error(), tt.wantErr) {
					t.Fatalf("err = %v, want %q", err, tt.wantErr)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("got  %+v\nwant %+v", got, tt.want)
			}
		})
	}
}

func TestParseRatiosFile(t *testing.T) {
	specs := readRatios(t, "ratios.txt")
	var labels []string
	for _, s := range specs {
		labels = append(labels, s.Label)
	}
	want := []string{"heal vs poll", "snapshot throughput 10 vs 1 MiB", "roll failed requests", "gone", "broken engine", "open anywhere"}
	if !reflect.DeepEqual(labels, want) {
		t.Errorf("labels = %q, want %q (comments and blank lines skipped)", labels, want)
	}

	f, err := os.Open(filepath.Join("testdata", "bad_ratios.txt"))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if _, err := ParseRatios(f, "bad_ratios.txt"); err == nil || !strings.HasPrefix(err.Error(), `bad_ratios.txt:2: ratio "no slash"`) {
		t.Errorf("err = %v, want it to name bad_ratios.txt:2", err)
	}
}

func TestComputeRatios(t *testing.T) {
	benchmarks := benchmarkReports(parseFiles(t, "count3.txt", "verbose_count4.txt"))
	specs := readRatios(t, "ratios.txt")
	type want struct {
		value, min, max float64
		noValue         bool
		noRange         bool
		missing         []string
		reason          string
		numN            int
		numPackage      string
	}
	wants := map[string]want{
		"heal vs poll":                    {value: 1.37 / 0.6, min: 1.31 / 0.63, max: 1.45 / 0.59, missing: []string{}, numN: 3, numPackage: daemonPkg},
		"snapshot throughput 10 vs 1 MiB": {value: 26.19 / 12.975, min: 25.8 / 13.2, max: 27 / 12.74, missing: []string{}, numN: 4, numPackage: backupPkg},
		"roll failed requests": {noValue: true, noRange: true, missing: []string{},
			reason: "denominator daemon.BenchmarkRoll/stacks=1/parallel=true:failed-requests has a zero median", numN: 3, numPackage: daemonPkg},
		"gone": {noValue: true, noRange: true, missing: []string{"daemon.BenchmarkGone:heal-s"},
			reason: "missing daemon.BenchmarkGone:heal-s"},
		"broken engine": {noValue: true, noRange: true, missing: []string{"daemon.BenchmarkEngineDown:ns/op"},
			reason: "missing daemon.BenchmarkEngineDown:ns/op (benchmark failed)", numPackage: daemonPkg},
		"open anywhere": {noValue: true, noRange: true, missing: []string{},
			reason: "ambiguous BenchmarkOpen:ns/op: in " + backupPkg + ", " + storePkg},
	}
	for _, spec := range specs {
		t.Run(spec.Label, func(t *testing.T) {
			w, ok := wants[spec.Label]
			if !ok {
				t.Fatal("no expectation")
			}
			r := ComputeRatio(spec, benchmarks)
			checkOptional(t, "value", r.Value, w.value, w.noValue)
			checkOptional(t, "min", r.Min, w.min, w.noRange)
			checkOptional(t, "max", r.Max, w.max, w.noRange)
			if !reflect.DeepEqual(r.Missing, w.missing) {
				t.Errorf("missing = %q, want %q", r.Missing, w.missing)
			}
			if r.Reason != w.reason {
				t.Errorf("reason = %q, want %q", r.Reason, w.reason)
			}
			if r.Numerator.N != w.numN || r.Numerator.Package != w.numPackage {
				t.Errorf("numerator = %+v, want n %d in %s", r.Numerator, w.numN, w.numPackage)
			}
		})
	}
}

func TestQuotientRangeUndefinedAcrossZero(t *testing.T) {
	num := Summarize("x", []float64{1, 2})
	den := Summarize("x", []float64{-1, 1, 3})
	if lo, hi := quotientRange(&num, &den); lo != nil || hi != nil {
		t.Errorf("range = %v %v, want none when the denominator's range holds zero", lo, hi)
	}
	neg := Summarize("x", []float64{-4, -2})
	lo, hi := quotientRange(&num, &neg)
	if lo == nil || hi == nil || *lo != -1 || *hi != -0.25 {
		t.Errorf("range = %v %v, want -1 to -0.25", lo, hi)
	}
}

func TestPackageMatches(t *testing.T) {
	tests := []struct {
		given string
		want  bool
	}{
		{daemonPkg, true}, {"daemon", true}, {"internal/daemon", true}, {"", true},
		{"aemon", false}, {"store", false}, {"gitopsd/daemon", false},
	}
	for _, tt := range tests {
		if got := packageMatches(daemonPkg, tt.given); got != tt.want {
			t.Errorf("packageMatches(%q) = %v, want %v", tt.given, got, tt.want)
		}
	}
}

func readRatios(t *testing.T, name string) []RatioSpec {
	t.Helper()
	f, err := os.Open(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	specs, err := ParseRatios(f, name)
	if err != nil {
		t.Fatal(err)
	}
	return specs
}

func checkOptional(t *testing.T, what string, got *float64, want float64, wantNone bool) {
	t.Helper()
	switch {
	case wantNone && got != nil:
		t.Errorf("%s = %v, want none", what, *got)
	case !wantNone && got == nil:
		t.Errorf("%s = none, want %v", what, want)
	case !wantNone && !near(*got, want):
		t.Errorf("%s = %v, want %v", what, *got, want)
	}
}
