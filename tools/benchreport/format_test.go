package main

import "testing"

func TestFormatNumber(t *testing.T) {
	tests := map[float64]string{
		0:           "0",
		1.37:        "1.37",
		1.3749:      "1.37",
		145.2:       "145",
		3719.23:     "3720",
		0.000123456: "0.000123",
		2.5:         "2.5",
		1048577:     "1048577",
		611:         "611",
		-0.5:        "-0.5",
		-1234.5:     "-1230",
	}
	for in, want := range tests {
		if got := formatNumber(in); got != want {
			t.Errorf("formatNumber(%v) = %q, want %q", in, got, want)
		}
	}
}

func TestFormatFigure(t *testing.T) {
	pct := func(v float64) *float64 { return &v }
	tests := []struct {
		name           string
		s              Summary
		median, spread string
	}{
		{"seconds", Summary{Unit: "ns/op", N: 3, Median: 1402318556, Min: 1351002210, Max: 1480553001, SpreadPct: pct(4.6191)}, "1.4 s", "±4.62% (1.35–1.48 s)"},
		{"milliseconds", Summary{Unit: "ns/op", N: 2, Median: 7145887, Min: 688000, Max: 10500000, SpreadPct: pct(68.6)}, "7.15 ms", "±68.6% (0.688–10.5 ms)"},
		{"microseconds", Summary{Unit: "ns/op", N: 3, Median: 28741, Min: 28533, Max: 29102, SpreadPct: pct(0.99)}, "28.7 µs", "±0.99% (28.5–29.1 µs)"},
		{"nanoseconds", Summary{Unit: "ns/op", N: 4, Median: 1225, Min: 1100, Max: 1300, SpreadPct: pct(8.16)}, "1.23 µs", "±8.16% (1.1–1.3 µs)"},
		{"small time", Summary{Unit: "ns/op", N: 2, Median: 5.11, Min: 2.8, Max: 7.42, SpreadPct: pct(45.2)}, "5.11 ns", "±45.2% (2.8–7.42 ns)"},
		{"custom metric", Summary{Unit: "heal-s", N: 3, Median: 1.37, Min: 1.31, Max: 1.45, SpreadPct: pct(5.109)}, "1.37", "±5.11% (1.31–1.45)"},
		{"count", Summary{Unit: "B/op", N: 3, Median: 1048577, Min: 1048576, Max: 1048577, SpreadPct: pct(0.0000477)}, "1048577", "±<0.01% (1048576–1048577)"},
		{"one run", Summary{Unit: "heal-s", N: 1, Median: 2, Min: 2, Max: 2}, "2", "— (one run)"},
		{"undefined spread", Summary{Unit: "failed-requests", N: 3, Median: 0, Min: 0, Max: 2}, "0", "n/a (0–2)"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := formatMedian(tt.s); got != tt.median {
				t.Errorf("median = %q, want %q", got, tt.median)
			}
			if got := formatSpread(tt.s); got != tt.spread {
				t.Errorf("spread = %q, want %q", got, tt.spread)
			}
		})
	}
}
