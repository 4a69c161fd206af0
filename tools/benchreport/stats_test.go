package main

import (
	"math"
	"reflect"
	"slices"
	"testing"
)

func TestSummarize(t *testing.T) {
	tests := []struct {
		name       string
		values     []float64
		median     float64
		min, max   float64
		spreadPct  float64
		spreadNull bool
	}{
		{name: "odd count, unsorted", values: []float64{1.37, 1.31, 1.45}, median: 1.37, min: 1.31, max: 1.45, spreadPct: 0.07 / 1.37 * 100},
		{name: "even count is the mean of the middle two", values: []float64{26.06, 26.32, 25.8, 27}, median: 26.19, min: 25.8, max: 27, spreadPct: 0.6 / 26.19 * 100},
		{name: "two runs", values: []float64{10, 20}, median: 15, min: 10, max: 20, spreadPct: 5.0 / 15 * 100},
		{name: "one run has no spread", values: []float64{42}, median: 42, min: 42, max: 42, spreadNull: true},
		{name: "all equal", values: []float64{0, 0, 0}, median: 0, min: 0, max: 0, spreadPct: 0},
		{name: "zero median with differing values", values: []float64{0, 2, 0}, median: 0, min: 0, max: 2, spreadNull: true},
		{name: "negative median uses its size", values: []float64{-10, -12, -8}, median: -10, min: -12, max: -8, spreadPct: 20},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := slices.Clone(tt.values)
			s := Summarize("u", in)
			if s.N != len(tt.values) || !near(s.Median, tt.median) || s.Min != tt.min || s.Max != tt.max {
				t.Errorf("n, median, min, max = %d %v %v %v; want %d %v %v %v", s.N, s.Median, s.Min, s.Max, len(tt.values), tt.median, tt.min, tt.max)
			}
			switch {
			case tt.spreadNull && s.SpreadPct != nil:
				t.Errorf("spread = %v, want none", *s.SpreadPct)
			case !tt.spreadNull && (s.SpreadPct == nil || !near(*s.SpreadPct, tt.spreadPct)):
				t.Errorf("spread = %v, want %v", s.SpreadPct, tt.spreadPct)
			}
			if !reflect.DeepEqual(s.Values, tt.values) || !reflect.DeepEqual(in, tt.values) {
				t.Errorf("values = %v (input now %v), want %v in the order read", s.Values, in, tt.values)
			}
		})
	}
}

func TestUnitOrder(t *testing.T) {
	units := []string{"allocs/op", "ns/op", "heal-s", "B/op", "MB/s", "failed-requests"}
	slices.SortFunc(units, compareUnits)
	want := []string{"MB/s", "failed-requests", "heal-s", "ns/op", "B/op", "allocs/op"}
	if !reflect.DeepEqual(units, want) {
		t.Errorf("order = %v, want %v", units, want)
	}
}

func near(a, b float64) bool {
	return math.Abs(a-b) <= 1e-9*math.Max(1, math.Abs(b))
}
