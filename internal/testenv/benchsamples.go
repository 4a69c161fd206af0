package testenv

import (
	"fmt"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
)

// BenchSamplesEnv names the file BenchSamples appends to (make bench sets
// it); unset, samples are not recorded.
const BenchSamplesEnv = "GITOPSD_BENCH_SAMPLES"

var benchSamplesMu sync.Mutex

// BenchSamples records each value of a benchmark that repeats a measurement
// inside one run (five pushes, seven `docker stop`s) as its own result line
// of the Go benchmark format, named NAME/runs, in the file $BenchSamplesEnv.
// benchreport reads that file beside go test's output, so the figure gets
// a minimum, median and maximum over the repeats, where the benchmark's
// own result line holds only its median.
func BenchSamples(b *testing.B, unit string, values ...float64) {
	b.Helper()
	path := os.Getenv(BenchSamplesEnv)
	if path == "" || len(values) == 0 {
		return
	}
	var w strings.Builder
	fmt.Fprintf(&w, "pkg: %s\n", callerPackage())
	for _, v := range values {
		fmt.Fprintf(&w, "%s/runs 1 %g %s\n", b.Name(), v, unit)
	}
	benchSamplesMu.Lock()
	defer benchSamplesMu.Unlock()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o644)
	if err != nil {
		b.Fatalf("record benchmark samples: %v", err)
	}
	defer f.Close()
	if _, err := f.WriteString(w.String()); err != nil {
		b.Fatalf("record benchmark samples in %s: %v", path, err)
	}
}

// callerPackage is the import path of the benchmark calling BenchSamples,
// the "pkg:" its lines belong to (as go test prints it).
func callerPackage() string {
	pc, _, _, ok := runtime.Caller(2)
	if !ok {
		return ""
	}
	name := runtime.FuncForPC(pc).Name() // github.com/x/y/internal/daemon.BenchmarkX.func1
	slash := strings.LastIndexByte(name, '/')
	dot := strings.IndexByte(name[slash+1:], '.')
	if dot < 0 {
		return name
	}
	return name[:slash+1+dot]
}
