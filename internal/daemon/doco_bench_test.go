package daemon

import (
	"os"
	"strings"
	"testing"

	"github.com/gitopsd/gitopsd/internal/testenv"
)

// BenchmarkDocoCD is doco-cd beside gitopsd in make bench's report, where
// doco-cd can be built from the Go module proxy here (testenv.DocoCD):
// otherwise it skips with one line saying why, and the report's doco-cd
// column says so. Built, it reports the stripped binary's size; doco-cd's
// timings need it driven against a local bare repository, which this
// benchmark does not do yet, and says so in its log.
func BenchmarkDocoCD(b *testing.B) {
	// The report takes a skip's reason from the first log line, so the
	// build says nothing before it.
	bin, err := testenv.DocoCD(quietTB{b})
	if err != nil {
		b.Skipf("doco-cd %s not compared: it does not build from the Go module proxy here: %s",
			testenv.DocoCDVersion, strings.Join(strings.Fields(err.Error()), " "))
	}
	info, err := os.Stat(bin)
	if err != nil {
		b.Fatal(err)
	}
	for b.Loop() {
		b.ReportMetric(float64(info.Size())/(1<<20), "MiB-stripped-binary")
	}
	b.Logf("doco-cd %s built (%s); its timings are not measured: driving it against a local repository is not written", testenv.DocoCDVersion, bin)
}

// quietTB drops a helper's progress lines.
type quietTB struct{ testing.TB }

func (quietTB) Logf(string, ...any) {}
