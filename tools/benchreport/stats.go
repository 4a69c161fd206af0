package main

import (
	"cmp"
	"math"
	"slices"
)

// Summary is one figure: the runs of one benchmark in one unit.
type Summary struct {
	Unit   string  `json:"unit"`
	N      int     `json:"n"`
	Median float64 `json:"median"`
	Min    float64 `json:"min"`
	Max    float64 `json:"max"`
	// SpreadPct is (max-min)/2 as a percentage of |median|; nil when that
	// means nothing: one run, or a zero median with differing values.
	SpreadPct *float64  `json:"spread_pct"`
	Values    []float64 `json:"values"`
}

// Summarize computes the figure for values, which must not be empty.
func Summarize(unit string, values []float64) Summary {
	sorted := slices.Clone(values)
	slices.Sort(sorted)
	s := Summary{
		Unit:   unit,
		N:      len(sorted),
		Median: median(sorted),
		Min:    sorted[0],
		Max:    sorted[len(sorted)-1],
		Values: slices.Clone(values),
	}
	s.SpreadPct = spreadPct(s)
	return s
}

// median of sorted values; for an even count, the mean of the two middle
// ones, so two runs give their mean rather than an arbitrary one of them.
func median(sorted []float64) float64 {
	n := len(sorted)
	if n%2 == 1 {
		return sorted[n/2]
	}
	return (sorted[n/2-1] + sorted[n/2]) / 2
}

func spreadPct(s Summary) *float64 {
	if s.N < 2 {
		return nil
	}
	half := (s.Max - s.Min) / 2
	if half == 0 {
		zero := 0.0
		return &zero
	}
	if s.Median == 0 {
		return nil
	}
	pct := half / math.Abs(s.Median) * 100
	return &pct
}

// Standard units go test prints for every benchmark; the custom metrics a
// benchmark reports itself are the figures it exists for, so they lead.
var standardUnitOrder = map[string]int{"ns/op": 1, "B/op": 2, "allocs/op": 3}

// compareUnits orders units: custom metrics by name, then ns/op, B/op,
// allocs/op.
func compareUnits(a, b string) int {
	ra, rb := standardUnitOrder[a], standardUnitOrder[b]
	if ra != rb {
		return ra - rb
	}
	return cmp.Compare(a, b)
}
