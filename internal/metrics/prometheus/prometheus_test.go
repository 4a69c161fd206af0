package prometheus

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/gitopsd/gitopsd/internal/testenv"
)

// scrape serves r as the daemon does and reads one scrape.
func scrape(t *testing.T, r *Registry) (int, string, string) {
	t.Helper()
	srv := httptest.NewServer(HandlerFor(r))
	defer srv.Close()
	resp, err := srv.Client().Get(srv.URL)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header.Get("Content-Type"), string(b)
}

type constCollector struct{ d *Desc }

func (c constCollector) Describe(ch chan<- *Desc) { ch <- c.d }
func (c constCollector) Collect(ch chan<- Metric) {
	ch <- MustNewConstMetric(c.d, GaugeValue, 1, "b\"\\\nx", "a")
}

// TestTextExposition: families by name, label pairs by label name, series
// by their values, escaped help and label values, histograms with
// cumulative buckets whose le is inclusive, and a series that exists at
// 0 from its first WithLabelValues.
func TestTextExposition(t *testing.T) {
	r := NewRegistry()
	c := NewCounterVec(CounterOpts{Name: "t_events_total", Help: "Events\\seen\nby kind."}, []string{"stack", "kind"})
	c.WithLabelValues("web", "stopped").Add(2)
	c.WithLabelValues("api", "missing")
	g := NewGauge(GaugeOpts{Name: "t_writable", Help: "1 or 0."})
	g.Set(1)
	g.Dec()
	h := NewHistogram(HistogramOpts{Name: "t_duration_seconds", Help: "Took.", Buckets: ExponentialBuckets(0.5, 2, 3)})
	for _, v := range []float64{0.5, 0.7, 3} {
		h.Observe(v)
	}
	r.MustRegister(c, g, h, constCollector{NewDesc("t_info", "Info.", []string{"z", "a"}, nil)})
	code, ctype, body := scrape(t, r)
	if code != http.StatusOK || ctype != ContentType {
		t.Fatalf("status %d, content type %q", code, ctype)
	}
	want := `# HELP t_duration_seconds Took.
# TYPE t_duration_seconds histogram
t_duration_seconds_bucket{le="0.5"} 1
t_duration_seconds_bucket{le="1"} 2
t_duration_seconds_bucket{le="2"} 2
t_duration_seconds_bucket{le="+Inf"} 3
t_duration_seconds_sum 4.2
t_duration_seconds_count 3
# HELP t_events_total Events\\seen\nby kind.
# TYPE t_events_total counter
t_events_total{kind="missing",stack="api"} 0
t_events_total{kind="stopped",stack="web"} 2
# HELP t_info Info.
# TYPE t_info gauge
t_info{a="a",z="b\"\\\nx"} 1
# HELP t_writable 1 or 0.
# TYPE t_writable gauge
t_writable 0
`
	if body != want {
		t.Errorf("exposition:\n%s\nwant:\n%s", body, want)
	}
}

// TestRegisteringANameTwicePanics: a family exposed twice would make
// Prometheus reject the whole scrape.
func TestRegisteringANameTwicePanics(t *testing.T) {
	r := NewRegistry()
	r.MustRegister(NewCounter(CounterOpts{Name: "t_total", Help: "x"}))
	defer func() {
		if recover() == nil {
			t.Error("no panic")
		}
	}()
	r.MustRegister(NewGauge(GaugeOpts{Name: "t_total", Help: "y"}))
}

type failing struct{ d *Desc }

func (f failing) Describe(ch chan<- *Desc) { ch <- f.d }
func (f failing) Collect(ch chan<- Metric) {
	ch <- NewInvalidMetric(f.d, errors.New("store is locked"))
}

// TestInvalidMetricFailsTheScrape: a collector that cannot read its
// source fails the scrape with 500 and the reason, rather than exposing a
// partial truth.
func TestInvalidMetricFailsTheScrape(t *testing.T) {
	r := NewRegistry()
	r.MustRegister(NewCounter(CounterOpts{Name: "t_total", Help: "x"}), failing{NewDesc("t_info", "y", nil, nil)})
	code, _, body := scrape(t, r)
	if code != http.StatusInternalServerError || !strings.Contains(body, "store is locked") {
		t.Errorf("status %d, body %q", code, body)
	}
}

// TestRuntimeMetrics: the Go and process collectors expose what the Go
// client's default ones did (the soak benchmark reads go_goroutines,
// dashboards the process ones), with this process's values, and promtool
// accepts the whole exposition.
func TestRuntimeMetrics(t *testing.T) {
	r := NewRegistry()
	r.MustRegister(NewGoCollector(), NewProcessCollector(),
		NewCounterVec(CounterOpts{Name: "t_events_total", Help: "Events."}, []string{"stack"}))
	_, _, body := scrape(t, r)
	value := func(name string) float64 {
		t.Helper()
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(name) + ` (\S+)$`).FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("no %s in:\n%s", name, body)
		}
		v, err := strconv.ParseFloat(m[1], 64)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	if v := value("go_goroutines"); v < 1 {
		t.Errorf("go_goroutines %v", v)
	}
	if v := value("process_resident_memory_bytes"); v < 1<<20 {
		t.Errorf("process_resident_memory_bytes %v", v)
	}
	if v := value("process_open_fds"); v < 3 {
		t.Errorf("process_open_fds %v", v)
	}
	fi, err := os.Stat("/proc/self")
	if err != nil {
		t.Fatal(err)
	}
	// /proc/self's time is the process's start, to the second.
	if v := value("process_start_time_seconds"); v < float64(fi.ModTime().Add(-2*time.Second).Unix()) || v > float64(time.Now().Unix()+1) {
		t.Errorf("process_start_time_seconds %v, the process started at %v", v, fi.ModTime())
	}
	for _, name := range []string{"go_memstats_alloc_bytes", "go_memstats_heap_inuse_bytes", "go_threads", "go_gc_duration_seconds_count", "go_sched_gomaxprocs_threads", "process_cpu_seconds_total", "process_max_fds"} {
		value(name)
	}
	promtool := testenv.NeedTool(t, "promtool", "prometheus")
	cmd := exec.Command(promtool, "check", "metrics")
	cmd.Stdin = bytes.NewReader([]byte(body))
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Errorf("promtool check metrics: %v\n%s\n%s", err, out, body)
	}
}
