package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"slices"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// Status is how a benchmark ended. The order matters: a benchmark that
// failed in one of its runs is failed, whatever the other runs did.
type Status string

const (
	StatusOK      Status = "ok"
	StatusSkipped Status = "skipped"
	StatusFailed  Status = "failed"
)

func (s Status) rank() int {
	switch s {
	case StatusFailed:
		return 2
	case StatusSkipped:
		return 1
	}
	return 0
}

// Key names a benchmark across runs: the same name in two packages is two
// benchmarks.
type Key struct {
	Package string
	Name    string
}

// Benchmark gathers what the raw output says about one benchmark.
type Benchmark struct {
	Key
	Status Status
	Reason string
	// Values holds, per unit, one value per run in the order read.
	Values map[string][]float64
	// procs holds the GOMAXPROCS suffixes seen ("" for none), to warn when
	// runs of different parallelism are pooled.
	procs []string
}

// Collection is everything read from the raw files.
type Collection struct {
	Benchmarks map[Key]*Benchmark
	CPU        string // the first "cpu:" line
	GOOS       string
	GOARCH     string
	Warnings   []string
}

// NewCollection returns an empty collection to Parse into.
func NewCollection() *Collection {
	return &Collection{Benchmarks: map[Key]*Benchmark{}}
}

// Parse reads one file of raw `go test -bench` output into c. source names
// the file in warnings. Only a read error is returned: a line it cannot
// understand is a warning, so one stray line never loses a report.
func (c *Collection) Parse(r io.Reader, source string) error {
	p := &parser{c: c, source: source}
	sc := bufio.NewScanner(r)
	// b.Logf output can run far past the scanner's default 64 KiB line,
	// which would end the read with an error and lose the report.
	sc.Buffer(make([]byte, 64*1024), 16*1024*1024)
	for sc.Scan() {
		p.lineNo++
		p.line(strings.TrimRight(sc.Text(), " \t\r"))
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("read %s: %w", source, err)
	}
	if p.results == 0 {
		c.warnf("%s: no benchmark results", source)
	}
	return nil
}

// parser is the state of reading one file: the configuration in force and
// what the indented lines that follow may belong to.
type parser struct {
	c       *Collection
	source  string
	lineNo  int
	results int
	pkg     string

	// awaiting is the benchmark a FAIL/SKIP line named, whose reason is
	// the next indented line.
	awaiting *Benchmark
	// bare is the benchmark named alone on a line (go test -v prints it
	// before running), and bareLog the first indented line after it: with
	// -v the reason comes before the FAIL line, not after.
	bare    string
	bareLog string
}

func (p *parser) line(line string) {
	if line == "" {
		return
	}
	if indented(line) {
		p.indentedLine(strings.TrimSpace(line))
		return
	}
	p.awaiting = nil
	if status, name, ok := statusLine(line); ok {
		p.status(status, name)
		return
	}
	if isBenchmarkName(firstField(line)) {
		p.benchmarkLine(line)
		return
	}
	if key, value, ok := configLine(line); ok {
		p.config(key, value)
	}
	// Anything else (PASS, ok, FAIL, program output) is not ours to read.
}

func (p *parser) indentedLine(text string) {
	if status, name, ok := statusLine(text); ok {
		// Nested sub-benchmark results are indented under their parent.
		p.status(status, name)
		return
	}
	if p.awaiting != nil {
		if p.awaiting.Reason == "" {
			p.awaiting.Reason = text
		}
		return
	}
	if p.bare != "" && p.bareLog == "" {
		p.bareLog = text
	}
}

// status records a "--- FAIL:" or "--- SKIP:" line.
func (p *parser) status(status Status, name string) {
	name, _ = splitProcs(name)
	b := p.c.benchmark(Key{Package: p.pkg, Name: name})
	if status.rank() > b.Status.rank() {
		b.Status = status
		b.Reason = ""
	}
	if b.Status != status {
		return // a skip after a failure does not explain the failure
	}
	if b.Reason == "" && p.bare == name {
		b.Reason = p.bareLog
	}
	p.bare, p.bareLog = "", ""
	p.awaiting = b
}

func (p *parser) benchmarkLine(line string) {
	fields := strings.Fields(line)
	if len(fields) == 1 {
		p.bare, _ = splitProcs(fields[0])
		p.bareLog = ""
		return
	}
	p.bare, p.bareLog = "", ""
	name, procs, values, err := parseResult(fields)
	if err != nil {
		p.c.warnf("%s:%d: skipping malformed benchmark line (%v): %q", p.source, p.lineNo, err, line)
		return
	}
	p.results++
	p.c.add(Key{Package: p.pkg, Name: name}, procs, values)
}

func (p *parser) config(key, value string) {
	switch key {
	case "pkg":
		p.pkg = value
	case "cpu":
		p.c.setMachineKey(key, &p.c.CPU, value)
	case "goos":
		p.c.setMachineKey(key, &p.c.GOOS, value)
	case "goarch":
		p.c.setMachineKey(key, &p.c.GOARCH, value)
	}
}

// setMachineKey keeps the first value of a key that describes the
// machine and warns when a later file disagrees: figures from two
// machines in one report cannot be read side by side.
func (c *Collection) setMachineKey(key string, field *string, value string) {
	switch {
	case *field == "":
		*field = value
	case *field != value:
		c.warnf("raw outputs disagree on %s: %q and %q; the report names the first", key, *field, value)
	}
}

// benchmark returns the entry for k, creating it as ok.
func (c *Collection) benchmark(k Key) *Benchmark {
	b, ok := c.Benchmarks[k]
	if !ok {
		b = &Benchmark{Key: k, Status: StatusOK, Values: map[string][]float64{}}
		c.Benchmarks[k] = b
	}
	return b
}

func (c *Collection) add(k Key, procs string, values []unitValue) {
	b := c.benchmark(k)
	if !slices.Contains(b.procs, procs) {
		b.procs = append(b.procs, procs)
		if len(b.procs) == 2 {
			c.warnf("%s %s ran with several GOMAXPROCS values; their runs are pooled into one figure", k.Package, k.Name)
		}
	}
	for _, v := range values {
		b.Values[v.unit] = append(b.Values[v.unit], v.value)
	}
}

func (c *Collection) warnf(format string, args ...any) {
	c.Warnings = append(c.Warnings, fmt.Sprintf(format, args...))
}

type unitValue struct {
	unit  string
	value float64
}

// parseResult reads the fields of a result line:
// name iterations value unit [value unit...].
func parseResult(fields []string) (name, procs string, values []unitValue, err error) {
	name, procs = splitProcs(fields[0])
	if len(fields) < 4 {
		return "", "", nil, fmt.Errorf("want name, iterations and at least one value and unit, got %d fields", len(fields))
	}
	if n, err := strconv.ParseUint(fields[1], 10, 64); err != nil || n == 0 {
		return "", "", nil, fmt.Errorf("iterations %q is not a positive integer", fields[1])
	}
	rest := fields[2:]
	if len(rest)%2 != 0 {
		return "", "", nil, fmt.Errorf("value %q has no unit", rest[len(rest)-1])
	}
	for i := 0; i < len(rest); i += 2 {
		v, err := strconv.ParseFloat(rest[i], 64)
		if err != nil || math.IsInf(v, 0) || math.IsNaN(v) {
			return "", "", nil, fmt.Errorf("value %q is not a finite number", rest[i])
		}
		values = append(values, unitValue{unit: rest[i+1], value: v})
	}
	return name, procs, values, nil
}

// statusLine recognises "--- FAIL: Name" and "--- SKIP: Name", also after
// the padded name go test prints before a run that then fails:
// "BenchmarkX-8   \t--- FAIL: BenchmarkX-8".
func statusLine(line string) (Status, string, bool) {
	for _, m := range []struct {
		marker string
		status Status
	}{{"--- FAIL: ", StatusFailed}, {"--- SKIP: ", StatusSkipped}} {
		i := strings.Index(line, m.marker)
		if i < 0 || (i > 0 && !isBenchmarkName(firstField(line))) {
			continue
		}
		name := firstField(line[i+len(m.marker):])
		if isBenchmarkName(name) {
			return m.status, name, true
		}
	}
	return "", "", false
}

// isBenchmarkName applies go test's rule: "Benchmark" followed by nothing
// or by a rune that is not lower case (BenchmarkX, Benchmark_x, but not
// Benchmarking).
func isBenchmarkName(s string) bool {
	rest, ok := strings.CutPrefix(s, "Benchmark")
	if !ok {
		return false
	}
	if rest == "" {
		return true
	}
	r, _ := utf8.DecodeRuneInString(rest)
	return !unicode.IsLower(r)
}

// splitProcs drops the -N GOMAXPROCS suffix go test appends to names.
func splitProcs(name string) (string, string) {
	i := strings.LastIndexByte(name, '-')
	if i <= 0 || i == len(name)-1 {
		return name, ""
	}
	for _, r := range name[i+1:] {
		if r < '0' || r > '9' {
			return name, ""
		}
	}
	return name[:i], name[i+1:]
}

// configLine recognises a benchfmt configuration line: a key that starts
// with a lower-case letter and holds no space or upper-case letter, then
// ":" and the value.
func configLine(line string) (key, value string, ok bool) {
	key, value, ok = strings.Cut(line, ":")
	if !ok || key == "" {
		return "", "", false
	}
	first, _ := utf8.DecodeRuneInString(key)
	if !unicode.IsLower(first) {
		return "", "", false
	}
	for _, r := range key {
		if unicode.IsSpace(r) || unicode.IsUpper(r) {
			return "", "", false
		}
	}
	return key, strings.TrimSpace(value), true
}

func indented(line string) bool {
	return line[0] == ' ' || line[0] == '\t'
}

func firstField(s string) string {
	f, _, _ := strings.Cut(strings.TrimLeft(s, " \t"), "\t")
	f, _, _ = strings.Cut(f, " ")
	return f
}
