package main

import (
	"bufio"
	"fmt"
	"io"
	"math"
	"strings"
)

// RatioSpec is one line of the ratios file.
type RatioSpec struct {
	Label       string
	Numerator   Operand
	Denominator Operand
}

// Operand names one figure: PACKAGE.BenchmarkName:UNIT as written.
type Operand struct {
	Ref     string // as written in the file, for messages
	Package string // as written: a full path, its trailing elements, or ""
	Name    string
	Unit    string
}

// ParseRatios reads a ratios file (see the package comment). A malformed
// line is an error naming the file and line: the file is written by hand,
// and a ratio silently dropped would look like one never asked for.
func ParseRatios(r io.Reader, source string) ([]RatioSpec, error) {
	var specs []RatioSpec
	sc := bufio.NewScanner(r)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		spec, err := parseRatioLine(line)
		if err != nil {
			return nil, fmt.Errorf("%s:%d: %w", source, n, err)
		}
		specs = append(specs, spec)
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read %s: %w", source, err)
	}
	return specs, nil
}

func parseRatioLine(line string) (RatioSpec, error) {
	label, expr, ok := strings.Cut(line, "=")
	label = strings.TrimSpace(label)
	if !ok || label == "" {
		return RatioSpec{}, fmt.Errorf(`want "LABEL = PKG.BenchmarkA:unit / PKG.BenchmarkB:unit", got %q`, line)
	}
	num, den, ok := strings.Cut(expr, " / ")
	if !ok {
		return RatioSpec{}, fmt.Errorf(`ratio %q: want "NUMERATOR / DENOMINATOR" with a space each side of "/"`, label)
	}
	n, err := parseOperand(strings.TrimSpace(num))
	if err != nil {
		return RatioSpec{}, fmt.Errorf("ratio %q numerator: %w", label, err)
	}
	d, err := parseOperand(strings.TrimSpace(den))
	if err != nil {
		return RatioSpec{}, fmt.Errorf("ratio %q denominator: %w", label, err)
	}
	return RatioSpec{Label: label, Numerator: n, Denominator: d}, nil
}

// parseOperand splits PACKAGE.BenchmarkName:UNIT. The unit is taken after
// the last ":" because names may hold ":" but units never do; the package
// ends at ".Benchmark" because import paths are lower case.
func parseOperand(s string) (Operand, error) {
	ref, unit, ok := cutLast(s, ":")
	if !ok || unit == "" || strings.ContainsAny(s, " \t") {
		return Operand{}, fmt.Errorf("%q: want PKG.BenchmarkName:unit", s)
	}
	op := Operand{Ref: s, Unit: unit, Name: ref}
	if !strings.HasPrefix(ref, "Benchmark") {
		i := strings.Index(ref, ".Benchmark")
		if i <= 0 {
			return Operand{}, fmt.Errorf("%q: no benchmark name (PKG.BenchmarkName:unit)", s)
		}
		op.Package, op.Name = ref[:i], ref[i+1:]
	}
	if !isBenchmarkName(op.Name) {
		return Operand{}, fmt.Errorf("%q: %q is not a benchmark name", s, op.Name)
	}
	return op, nil
}

func cutLast(s, sep string) (before, after string, found bool) {
	i := strings.LastIndex(s, sep)
	if i < 0 {
		return s, "", false
	}
	return s[:i], s[i+len(sep):], true
}

// Ratio is a computed ratio as the report shows it.
type Ratio struct {
	Label string `json:"label"`
	// Value is the ratio of the medians; Min and Max bound the quotient
	// of any numerator run by any denominator run.
	Value       *float64      `json:"value"`
	Min         *float64      `json:"min"`
	Max         *float64      `json:"max"`
	Numerator   OperandFigure `json:"numerator"`
	Denominator OperandFigure `json:"denominator"`
	Missing     []string      `json:"missing"`
	Reason      string        `json:"reason"`
}

// OperandFigure is an operand as resolved against the benchmarks.
type OperandFigure struct {
	Ref     string   `json:"ref"`
	Package string   `json:"package"` // the full path when found
	Name    string   `json:"name"`
	Unit    string   `json:"unit"`
	N       int      `json:"n"`
	Median  *float64 `json:"median"`
}

// ComputeRatio resolves both operands in benchmarks and divides the
// medians. What keeps it from a value is said in Reason, never hidden.
func ComputeRatio(spec RatioSpec, benchmarks []BenchmarkReport) Ratio {
	num := resolve(spec.Numerator, benchmarks)
	den := resolve(spec.Denominator, benchmarks)
	r := Ratio{Label: spec.Label, Numerator: num.fig, Denominator: den.fig, Missing: []string{}}
	var problems []string
	for _, res := range []resolution{num, den} {
		if res.problem != "" {
			problems = append(problems, res.problem)
		}
		if res.absent {
			r.Missing = append(r.Missing, res.fig.Ref)
		}
	}
	if len(problems) > 0 {
		r.Reason = strings.Join(problems, "; ")
		return r
	}
	if den.summary.Median == 0 {
		r.Reason = "denominator " + spec.Denominator.Ref + " has a zero median"
		return r
	}
	value := num.summary.Median / den.summary.Median
	r.Value = &value
	r.Min, r.Max = quotientRange(num.summary, den.summary)
	return r
}

// resolution is an operand looked up in the benchmarks.
type resolution struct {
	summary *Summary // nil unless found
	fig     OperandFigure
	problem string // empty when found
	absent  bool   // the figure is not there at all (not merely ambiguous)
}

func resolve(op Operand, benchmarks []BenchmarkReport) resolution {
	res := resolution{fig: OperandFigure{Ref: op.Ref, Name: op.Name, Unit: op.Unit}}
	var found []*BenchmarkReport
	for i := range benchmarks {
		b := &benchmarks[i]
		if b.Name == op.Name && packageMatches(b.Package, op.Package) {
			found = append(found, b)
		}
	}
	switch {
	case len(found) == 0:
		res.problem, res.absent = "missing "+op.Ref, true
		return res
	case len(found) > 1:
		var pkgs []string
		for _, b := range found {
			pkgs = append(pkgs, b.Package)
		}
		res.problem = fmt.Sprintf("ambiguous %s: in %s", op.Ref, strings.Join(pkgs, ", "))
		return res
	}
	b := found[0]
	res.fig.Package = b.Package
	res.summary = b.metric(op.Unit)
	if res.summary == nil {
		res.absent = true
		res.problem = fmt.Sprintf("missing %s (no %s figure)", op.Ref, op.Unit)
		if b.Status != StatusOK {
			res.problem = fmt.Sprintf("missing %s (benchmark %s)", op.Ref, b.Status)
		}
		return res
	}
	m := res.summary.Median
	res.fig.N, res.fig.Median = res.summary.N, &m
	return res
}

// quotientRange bounds num/den over the runs: the extremes of a quotient
// of two ranges are among the quotients of their ends, as long as the
// denominator's range does not hold zero.
func quotientRange(num, den *Summary) (lo, hi *float64) {
	if den.Min <= 0 && den.Max >= 0 {
		return nil, nil
	}
	minQ, maxQ := math.Inf(1), math.Inf(-1)
	for _, a := range []float64{num.Min, num.Max} {
		for _, b := range []float64{den.Min, den.Max} {
			minQ = math.Min(minQ, a/b)
			maxQ = math.Max(maxQ, a/b)
		}
	}
	return &minQ, &maxQ
}

// packageMatches accepts the full import path or its trailing path
// elements, so "daemon" names github.com/gitopsd/gitopsd/internal/daemon.
// An empty package matches any, for a name that is unique anyway.
func packageMatches(full, given string) bool {
	return given == "" || full == given || strings.HasSuffix(full, "/"+given)
}
