// Package prometheus is the part of the Prometheus Go client that gitopsd
// uses, with the same names: counters, gauges and histograms with labels,
// collectors read at each scrape, a registry, and the text exposition
// format (version 0.0.4) that Prometheus scrapes. It replaces
// github.com/prometheus/client_golang, whose protobuf model, runtime
// collectors and content negotiation were 1.7 MB of a 27 MiB binary for
// twenty series (issue 20); the Go and process metrics are those of that
// client's default collectors (runtime.go).
package prometheus

import (
	"errors"
	"fmt"
	"io"
	"math"
	"net/http"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
)

// ValueType is the type of a metric made with MustNewConstMetric.
type ValueType int

const (
	CounterValue ValueType = iota + 1
	GaugeValue
	UntypedValue
)

func (t ValueType) typeName() string {
	switch t {
	case CounterValue:
		return "counter"
	case GaugeValue:
		return "gauge"
	}
	return "untyped"
}

// Desc describes a metric family: its name, help and label names.
type Desc struct {
	name, help string
	labels     []string
}

// NewDesc describes a metric. constLabels are not supported (gitopsd has
// none): they must be nil.
func NewDesc(name, help string, labels []string, constLabels map[string]string) *Desc {
	if constLabels != nil {
		panic("prometheus: const labels are not supported")
	}
	return &Desc{name: name, help: help, labels: labels}
}

// Metric is one series of a family, or an error reading it.
type Metric struct {
	desc   *Desc
	typ    string // counter, gauge, histogram, summary or untyped
	labels []string
	value  float64
	// Histograms and summaries: bucket upper bounds (le) or quantiles,
	// with cumulative counts or quantile values.
	bounds, counts []float64
	sum            float64
	count          uint64
	err            error
}

// Collector yields metrics at each scrape.
type Collector interface {
	Describe(chan<- *Desc)
	Collect(chan<- Metric)
}

// MustNewConstMetric is a series whose value is known at collection time.
func MustNewConstMetric(desc *Desc, t ValueType, value float64, labelValues ...string) Metric {
	if len(labelValues) != len(desc.labels) {
		panic(fmt.Sprintf("prometheus: %s has %d labels, got %d values", desc.name, len(desc.labels), len(labelValues)))
	}
	return Metric{desc: desc, typ: t.typeName(), labels: labelValues, value: value}
}

// NewInvalidMetric reports that desc's series could not be read: the
// scrape fails with err, as the Go client's default handler does.
func NewInvalidMetric(desc *Desc, err error) Metric { return Metric{desc: desc, err: err} }

// Opts names a metric.
type Opts struct {
	Name, Help string
}

type (
	CounterOpts = Opts
	GaugeOpts   = Opts
)

// HistogramOpts names a histogram and gives its bucket upper bounds.
type HistogramOpts struct {
	Name, Help string
	Buckets    []float64
}

// ExponentialBuckets returns count bounds from start, each factor times the one before.
func ExponentialBuckets(start, factor float64, count int) []float64 {
	b := make([]float64, count)
	for i := range b {
		b[i] = start
		start *= factor
	}
	return b
}

// Counter only goes up.
type Counter interface {
	Collector
	Inc()
	Add(float64)
}

// Gauge goes up and down.
type Gauge interface {
	Collector
	Set(float64)
	Inc()
	Dec()
	Add(float64)
	Sub(float64)
}

// Histogram counts observations in buckets.
type Histogram interface {
	Collector
	Observe(float64)
}

// value is a counter's or gauge's series.
type value struct {
	desc   *Desc
	typ    string
	labels []string
	mu     sync.Mutex
	v      float64
}

func (v *value) Describe(ch chan<- *Desc) { ch <- v.desc }
func (v *value) Collect(ch chan<- Metric) {
	v.mu.Lock()
	defer v.mu.Unlock()
	ch <- Metric{desc: v.desc, typ: v.typ, labels: v.labels, value: v.v}
}
func (v *value) Set(f float64) { v.mu.Lock(); v.v = f; v.mu.Unlock() }
func (v *value) Add(f float64) {
	if v.typ == "counter" && f < 0 {
		panic("prometheus: a counter cannot go down")
	}
	v.mu.Lock()
	v.v += f
	v.mu.Unlock()
}
func (v *value) Inc()          { v.Add(1) }
func (v *value) Dec()          { v.mu.Lock(); v.v--; v.mu.Unlock() }
func (v *value) Sub(f float64) { v.mu.Lock(); v.v -= f; v.mu.Unlock() }

// NewCounter is a counter without labels.
func NewCounter(o CounterOpts) Counter {
	return &value{desc: NewDesc(o.Name, o.Help, nil, nil), typ: "counter"}
}

// NewGauge is a gauge without labels.
func NewGauge(o GaugeOpts) Gauge {
	return &value{desc: NewDesc(o.Name, o.Help, nil, nil), typ: "gauge"}
}

type histogram struct {
	desc   *Desc
	labels []string
	bounds []float64
	mu     sync.Mutex
	counts []uint64 // per bucket, not cumulative; the last is +Inf
	sum    float64
	n      uint64
}

// NewHistogram is a histogram without labels.
func NewHistogram(o HistogramOpts) Histogram {
	return newHistogram(NewDesc(o.Name, o.Help, nil, nil), o.Buckets, nil)
}

func newHistogram(d *Desc, bounds []float64, labels []string) *histogram {
	bounds = slices.Clone(bounds)
	slices.Sort(bounds)
	return &histogram{desc: d, labels: labels, bounds: bounds, counts: make([]uint64, len(bounds)+1)}
}

func (h *histogram) Describe(ch chan<- *Desc) { ch <- h.desc }
func (h *histogram) Observe(f float64) {
	i := sort.SearchFloat64s(h.bounds, f) // the first bound >= f: le is inclusive
	h.mu.Lock()
	h.counts[i]++
	h.sum += f
	h.n++
	h.mu.Unlock()
}
func (h *histogram) Collect(ch chan<- Metric) {
	h.mu.Lock()
	defer h.mu.Unlock()
	cum := make([]float64, len(h.bounds))
	var c uint64
	for i := range h.bounds {
		c += h.counts[i]
		cum[i] = float64(c)
	}
	ch <- Metric{desc: h.desc, typ: "histogram", labels: h.labels, bounds: h.bounds, counts: cum, sum: h.sum, count: h.n}
}

// vec holds the series of one family, one per set of label values; a
// series exists from its first WithLabelValues on (at 0).
type vec[T Collector] struct {
	desc   *Desc
	make   func(labels []string) T
	mu     sync.Mutex
	series map[string]T
}

func (v *vec[T]) Describe(ch chan<- *Desc) { ch <- v.desc }
func (v *vec[T]) Collect(ch chan<- Metric) {
	v.mu.Lock()
	all := make([]T, 0, len(v.series))
	for _, s := range v.series {
		all = append(all, s)
	}
	v.mu.Unlock()
	for _, s := range all {
		s.Collect(ch)
	}
}

// WithLabelValues returns the series of these label values, in the order
// the family's labels were given.
func (v *vec[T]) WithLabelValues(lvs ...string) T {
	if len(lvs) != len(v.desc.labels) {
		panic(fmt.Sprintf("prometheus: %s has %d labels, got %d values", v.desc.name, len(v.desc.labels), len(lvs)))
	}
	k := strings.Join(lvs, "\xff")
	v.mu.Lock()
	defer v.mu.Unlock()
	s, ok := v.series[k]
	if !ok {
		s = v.make(slices.Clone(lvs))
		v.series[k] = s
	}
	return s
}

// DeleteLabelValues removes the series of these label values; false when
// there was none.
func (v *vec[T]) DeleteLabelValues(lvs ...string) bool {
	k := strings.Join(lvs, "\xff")
	v.mu.Lock()
	defer v.mu.Unlock()
	_, ok := v.series[k]
	delete(v.series, k)
	return ok
}

// Reset removes every series.
func (v *vec[T]) Reset() {
	v.mu.Lock()
	clear(v.series)
	v.mu.Unlock()
}

type (
	CounterVec   struct{ vec[Counter] }
	GaugeVec     struct{ vec[Gauge] }
	HistogramVec struct{ vec[Histogram] }
)

// NewCounterVec is a family of counters by labels.
func NewCounterVec(o CounterOpts, labels []string) *CounterVec {
	d := NewDesc(o.Name, o.Help, labels, nil)
	return &CounterVec{vec[Counter]{desc: d, series: map[string]Counter{},
		make: func(lvs []string) Counter { return &value{desc: d, typ: "counter", labels: lvs} }}}
}

// NewGaugeVec is a family of gauges by labels.
func NewGaugeVec(o GaugeOpts, labels []string) *GaugeVec {
	d := NewDesc(o.Name, o.Help, labels, nil)
	return &GaugeVec{vec[Gauge]{desc: d, series: map[string]Gauge{},
		make: func(lvs []string) Gauge { return &value{desc: d, typ: "gauge", labels: lvs} }}}
}

// NewHistogramVec is a family of histograms by labels.
func NewHistogramVec(o HistogramOpts, labels []string) *HistogramVec {
	d := NewDesc(o.Name, o.Help, labels, nil)
	return &HistogramVec{vec[Histogram]{desc: d, series: map[string]Histogram{},
		make: func(lvs []string) Histogram { return newHistogram(d, o.Buckets, lvs) }}}
}

// Registry holds the collectors of one endpoint.
type Registry struct {
	mu         sync.Mutex
	collectors []Collector
	names      map[string]bool
}

// NewRegistry is an empty registry.
func NewRegistry() *Registry { return &Registry{names: map[string]bool{}} }

// MustRegister adds collectors; a family name registered twice panics,
// as it would be exposed twice.
func (r *Registry) MustRegister(cs ...Collector) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, c := range cs {
		ch := make(chan *Desc, 16)
		go func() { c.Describe(ch); close(ch) }()
		var names []string
		for d := range ch {
			names = append(names, d.name)
		}
		for _, n := range names {
			if r.names[n] {
				panic("prometheus: " + n + " is registered twice")
			}
			r.names[n] = true
		}
		r.collectors = append(r.collectors, c)
	}
}

// Family is a metric name's series, sorted by their label values.
type Family struct {
	name, help, typ string
	metrics         []Metric
}

// GetName is the family's name.
func (f *Family) GetName() string { return f.name }

// Gather collects every registered collector: the families sorted by
// name. An invalid metric's error is returned, joined with the others,
// beside what could be read.
func (r *Registry) Gather() ([]*Family, error) {
	r.mu.Lock()
	cs := slices.Clone(r.collectors)
	r.mu.Unlock()
	ch := make(chan Metric, 64)
	go func() {
		var wg sync.WaitGroup
		for _, c := range cs {
			wg.Go(func() { c.Collect(ch) })
		}
		wg.Wait()
		close(ch)
	}()
	byName := map[string]*Family{}
	var errs []error
	for m := range ch {
		if m.err != nil {
			errs = append(errs, fmt.Errorf("collect %s: %w", m.desc.name, m.err))
			continue
		}
		f := byName[m.desc.name]
		if f == nil {
			f = &Family{name: m.desc.name, help: m.desc.help, typ: m.typ}
			byName[m.desc.name] = f
		}
		f.metrics = append(f.metrics, m)
	}
	fams := make([]*Family, 0, len(byName))
	for _, f := range byName {
		fams = append(fams, f)
		// The exposition lists label pairs by name, and series by them.
		for i := range f.metrics {
			f.metrics[i] = sortedLabels(f.metrics[i])
		}
		slices.SortFunc(f.metrics, func(a, b Metric) int { return slices.Compare(a.labels, b.labels) })
	}
	slices.SortFunc(fams, func(a, b *Family) int { return strings.Compare(a.name, b.name) })
	return fams, errors.Join(errs...)
}

// sortedLabels returns m with its label names (in its desc) and values in
// name order, as the exposition lists them.
func sortedLabels(m Metric) Metric {
	if slices.IsSorted(m.desc.labels) {
		return m
	}
	idx := make([]int, len(m.desc.labels))
	for i := range idx {
		idx[i] = i
	}
	sort.Slice(idx, func(a, b int) bool { return m.desc.labels[idx[a]] < m.desc.labels[idx[b]] })
	names, vals := make([]string, len(idx)), make([]string, len(idx))
	for i, j := range idx {
		names[i], vals[i] = m.desc.labels[j], m.labels[j]
	}
	d := *m.desc
	d.labels = names
	m.desc, m.labels = &d, vals
	return m
}

// ContentType is the text exposition format's, version 0.0.4.
const ContentType = "text/plain; version=0.0.4; charset=utf-8"

// WriteText writes families in the text exposition format.
func WriteText(w io.Writer, fams []*Family) error {
	var b strings.Builder
	for _, f := range fams {
		fmt.Fprintf(&b, "# HELP %s %s\n# TYPE %s %s\n", f.name, escapeHelp(f.help), f.name, f.typ)
		for _, m := range f.metrics {
			switch m.typ {
			case "histogram", "summary":
				bound, suffix := "le", "_bucket"
				if m.typ == "summary" {
					bound, suffix = "quantile", ""
				}
				for i, le := range m.bounds {
					sample(&b, f.name+suffix, m.desc.labels, m.labels, bound, formatFloat(le), m.counts[i])
				}
				if m.typ == "histogram" {
					sample(&b, f.name+suffix, m.desc.labels, m.labels, bound, "+Inf", float64(m.count))
				}
				sample(&b, f.name+"_sum", m.desc.labels, m.labels, "", "", m.sum)
				sample(&b, f.name+"_count", m.desc.labels, m.labels, "", "", float64(m.count))
			default:
				sample(&b, f.name, m.desc.labels, m.labels, "", "", m.value)
			}
		}
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// sample writes one line; extra is a last label (le, quantile) when set.
func sample(b *strings.Builder, name string, labels, values []string, extra, extraValue string, v float64) {
	b.WriteString(name)
	if len(labels) > 0 || extra != "" {
		b.WriteByte('{')
		for i, l := range labels {
			if i > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(b, "%s=\"%s\"", l, escapeLabel(values[i]))
		}
		if extra != "" {
			if len(labels) > 0 {
				b.WriteByte(',')
			}
			fmt.Fprintf(b, "%s=\"%s\"", extra, extraValue)
		}
		b.WriteByte('}')
	}
	b.WriteByte(' ')
	b.WriteString(formatFloat(v))
	b.WriteByte('\n')
}

func formatFloat(f float64) string {
	switch {
	case math.IsInf(f, 1):
		return "+Inf"
	case math.IsInf(f, -1):
		return "-Inf"
	case math.IsNaN(f):
		return "NaN"
	}
	return strconv.FormatFloat(f, 'g', -1, 64)
}

var (
	helpEscaper  = strings.NewReplacer(`\`, `\\`, "\n", `\n`)
	labelEscaper = strings.NewReplacer(`\`, `\\`, "\n", `\n`, `"`, `\"`)
)

func escapeHelp(s string) string  { return helpEscaper.Replace(s) }
func escapeLabel(s string) string { return labelEscaper.Replace(s) }

// HandlerFor serves r's metrics in the text format. A collector's error
// fails the scrape with status 500 and the error, as the Go client's
// default handler does: Prometheus then records the target down rather
// than a partial truth.
func HandlerFor(r *Registry) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fams, err := r.Gather()
		if err != nil {
			http.Error(w, "An error has occurred while serving metrics:\n\n"+err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", ContentType)
		_ = WriteText(w, fams)
	})
}
