package main

import (
	"math"
	"strconv"
)

// formatNumber shows v with three significant digits in plain decimals
// (3719.23 is "3720", not "3.72e+03"), and an integer in full, since
// allocs/op and B/op are counts that lose meaning when rounded.
func formatNumber(v float64) string {
	if v == 0 {
		return "0" // also for -0
	}
	if v == math.Trunc(v) {
		return strconv.FormatFloat(v, 'f', -1, 64)
	}
	rounded, err := strconv.ParseFloat(strconv.FormatFloat(v, 'e', 2, 64), 64)
	if err != nil { // cannot happen: FormatFloat output always parses
		return strconv.FormatFloat(v, 'g', 3, 64)
	}
	return strconv.FormatFloat(rounded, 'f', -1, 64)
}

// timeScale picks the unit a duration in nanoseconds reads best in.
func timeScale(ns float64) (divisor float64, unit string) {
	switch abs := math.Abs(ns); {
	case abs >= 1e9:
		return 1e9, "s"
	case abs >= 1e6:
		return 1e6, "ms"
	case abs >= 1e3:
		return 1e3, "µs"
	}
	return 1, "ns"
}

// metricLabel is how a unit is named in the Markdown report: ns/op is
// shown as a time, so it is called one.
func metricLabel(unit string) string {
	if unit == "ns/op" {
		return "time/op"
	}
	return unit
}

// formatMedian shows a time in the unit that suits it; formatSpread uses
// the same unit for min and max, so they read alike.
func formatMedian(s Summary) string {
	if s.Unit != "ns/op" {
		return formatNumber(s.Median)
	}
	div, unit := timeScale(s.Median)
	return formatNumber(s.Median/div) + " " + unit
}

// formatSpread is "±2.1% (1.34–1.4)"; a time shows its unit once, after
// the range.
func formatSpread(s Summary) string {
	if s.N < 2 {
		return "— (one run)"
	}
	pct := formatPct(s.SpreadPct)
	if s.Unit != "ns/op" {
		return pct + " (" + formatNumber(s.Min) + "–" + formatNumber(s.Max) + ")"
	}
	div, unit := timeScale(s.Median)
	return pct + " (" + formatNumber(s.Min/div) + "–" + formatNumber(s.Max/div) + " " + unit + ")"
}

// formatPct shows a spread; below 0.01% it is noise in the last digit of
// a large count (1048576–1048577 B/op), not worth three digits.
func formatPct(pct *float64) string {
	switch {
	case pct == nil:
		return "n/a"
	case *pct > 0 && *pct < 0.01:
		return "±<0.01%"
	}
	return "±" + formatNumber(*pct) + "%"
}
