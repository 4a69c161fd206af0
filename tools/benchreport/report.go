package main

import (
	"cmp"
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
)

// ReportVersion changes when a field of the JSON report changes meaning
// or goes away; new fields do not change it.
const ReportVersion = 1

// Report is the whole report; its JSON form is the machine contract
// documented in the package comment.
type Report struct {
	Version    int               `json:"version"`
	Machine    Machine           `json:"machine"`
	Benchmarks []BenchmarkReport `json:"benchmarks"`
	Sizes      []Size            `json:"sizes"`
	Ratios     []Ratio           `json:"ratios"`
	// Comparison is the comparison table (-rows): one figure per row and
	// column.
	Comparison Table `json:"comparison"`
}

// BenchmarkReport is one benchmark with its figures.
type BenchmarkReport struct {
	Package string    `json:"package"`
	Name    string    `json:"name"`
	Status  Status    `json:"status"`
	Reason  string    `json:"reason"`
	Metrics []Summary `json:"metrics"`
}

func (b *BenchmarkReport) metric(unit string) *Summary {
	for i := range b.Metrics {
		if b.Metrics[i].Unit == unit {
			return &b.Metrics[i]
		}
	}
	return nil
}

// BuildReport puts the parts together in the report's stable order.
func BuildReport(c *Collection, m Machine, sizes []Size, ratios []RatioSpec) Report {
	r := Report{
		Version:    ReportVersion,
		Machine:    m,
		Benchmarks: benchmarkReports(c),
		Sizes:      sizes,
		Ratios:     []Ratio{},
		Comparison: Table{Columns: []string{}, Rows: []Row{}, NotMeasured: []NotMeasured{}},
	}
	if r.Sizes == nil {
		r.Sizes = []Size{}
	}
	for _, spec := range ratios {
		r.Ratios = append(r.Ratios, ComputeRatio(spec, r.Benchmarks))
	}
	return r
}

// Failed reports whether any benchmark failed.
func (r Report) Failed() bool {
	return slices.ContainsFunc(r.Benchmarks, func(b BenchmarkReport) bool { return b.Status == StatusFailed })
}

func benchmarkReports(c *Collection) []BenchmarkReport {
	out := []BenchmarkReport{}
	for _, b := range c.Benchmarks {
		br := BenchmarkReport{Package: b.Package, Name: b.Name, Status: b.Status, Reason: b.Reason, Metrics: []Summary{}}
		for unit, values := range b.Values {
			br.Metrics = append(br.Metrics, Summarize(unit, values))
		}
		slices.SortFunc(br.Metrics, func(x, y Summary) int { return compareUnits(x.Unit, y.Unit) })
		out = append(out, br)
	}
	slices.SortFunc(out, func(x, y BenchmarkReport) int {
		return cmp.Or(cmp.Compare(x.Package, y.Package), cmp.Compare(x.Name, y.Name))
	})
	explainFailedParents(out)
	return out
}

// explainFailedParents gives a reason to a failed benchmark that printed
// none because it failed only through a sub-benchmark, so the report
// points at the sub-benchmark instead of showing an empty reason.
func explainFailedParents(benchmarks []BenchmarkReport) {
	for i := range benchmarks {
		parent := &benchmarks[i]
		if parent.Status != StatusFailed || parent.Reason != "" {
			continue
		}
		for _, child := range benchmarks {
			if child.Package == parent.Package && child.Status == StatusFailed &&
				strings.HasPrefix(child.Name, parent.Name+"/") {
				parent.Reason = "sub-benchmark " + child.Name + " failed"
				break
			}
		}
	}
}

// WriteJSON writes r as indented JSON.
func WriteJSON(w io.Writer, r Report) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	if err := enc.Encode(r); err != nil {
		return fmt.Errorf("encode JSON report: %w", err)
	}
	return nil
}
