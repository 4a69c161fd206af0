package fleet

import (
	"fmt"
	"math"
	"testing"
)

func TestWaveOf(t *testing.T) {
	waves := []Wave{
		{Name: "canary", Kind: SelectLabels, Labels: map[string]string{"ring": "canary", "site": "berlin"}},
		{Name: "edge", Kind: SelectNames, Names: []string{"edge-0*", "lab-?"}},
		{Name: "rest", Kind: SelectAll},
	}
	for _, tc := range []struct {
		host Host
		want int
	}{
		{Host{"shop-1", map[string]string{"ring": "canary", "site": "berlin"}}, 0},
		{Host{"edge-01", map[string]string{"ring": "canary", "site": "berlin", "x": "y"}}, 0}, // the first wave that matches
		{Host{"edge-01", map[string]string{"ring": "canary"}}, 1},                             // every label must match
		{Host{"lab-7", nil}, 1},
		{Host{"lab-77", nil}, 2},
		{Host{"shop-2", nil}, 2},
	} {
		if got := WaveOf(tc.host, waves); got != tc.want {
			t.Errorf("WaveOf(%+v) = %d, want %d", tc.host, got, tc.want)
		}
	}
	// Without a catch-all, an unmatched host is in the implicit last wave.
	r := &Rollout{Waves: waves[:2]}
	if got := WaveOf(Host{Name: "shop-2"}, r.Waves); got != 2 || r.WaveName(got) != ImplicitWave || r.WaveIndex(ImplicitWave) != 2 {
		t.Errorf("unmatched host: wave %d %q, want 2 %q", got, r.WaveName(got), ImplicitWave)
	}
}

// TestPercentSplit: with 10,000 simulated host names, percent: 10 selects
// 10 % ± 1 %, and a later percent: 30 wave (cumulative) the next 20 %.
func TestPercentSplit(t *testing.T) {
	waves := []Wave{{Name: "early", Kind: SelectPercent, Percent: 10}, {Name: "more", Kind: SelectPercent, Percent: 30}, {Name: "rest", Kind: SelectAll}}
	const n = 10000
	var count [3]int
	for i := range n {
		count[WaveOf(Host{Name: fmt.Sprintf("shop-%05d", i)}, waves)]++
	}
	t.Logf("10,000 names: early (percent 10) %d, more (percent 30) %d, rest %d", count[0], count[1], count[2])
	if math.Abs(float64(count[0])/n-0.10) > 0.01 {
		t.Errorf("percent: 10 selected %d of %d", count[0], n)
	}
	if math.Abs(float64(count[1])/n-0.20) > 0.01 {
		t.Errorf("percent: 30 after percent: 10 selected %d of %d, want 20 %% ± 1 %%", count[1], n)
	}
	// Stable: the same name is always in the same place.
	if Bucket("edge-03") != Bucket("edge-03") || Bucket("edge-03") == Bucket("edge-04") {
		t.Error("Bucket is not a stable function of the name")
	}
}
