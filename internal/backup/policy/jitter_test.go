package policy

import (
	"fmt"
	"testing"
	"time"
)

func TestJitterBounds(t *testing.T) {
	for _, limit := range []time.Duration{1, time.Second, 30 * time.Second, DefaultJitterMax, 6 * time.Hour} {
		for i := range 500 {
			key := fmt.Sprintf("host-%d/app/data", i)
			if d := Jitter(key, limit); d < 0 || d >= limit {
				t.Fatalf("Jitter(%q, %v) = %v, out of [0, max)", key, limit, d)
			}
			if d := Jitter("", limit); d < 0 || d >= limit {
				t.Fatalf("Jitter(\"\", %v) = %v, out of [0, max)", limit, d)
			}
		}
	}
	for _, limit := range []time.Duration{0, -time.Minute} {
		if d := Jitter("web-1/app/data", limit); d != 0 {
			t.Errorf("Jitter(max %v) = %v, want 0", limit, d)
		}
		if d := Jitter("", limit); d != 0 {
			t.Errorf("Jitter(\"\", max %v) = %v, want 0", limit, d)
		}
	}
}

func TestJitterStable(t *testing.T) {
	key := "web-1/app/data"
	first := Jitter(key, DefaultJitterMax)
	for range 10 {
		if d := Jitter(key, DefaultJitterMax); d != first {
			t.Fatalf("Jitter(%q) changed: %v then %v", key, first, d)
		}
	}
	// Pinned: an upgrade must not move every job's offset under operators.
	if want := 84541584779 * time.Nanosecond; first != want {
		t.Errorf("Jitter(%q, 5m) = %v, want %v", key, first, want)
	}
}

func TestJitterSpread(t *testing.T) {
	const keys, bins = 2000, 10
	limit := DefaultJitterMax
	var count [bins]int
	distinct := map[time.Duration]bool{}
	for i := range keys {
		d := Jitter(fmt.Sprintf("host-%d/app/data", i), limit)
		count[int(d*bins/limit)]++
		distinct[d] = true
	}
	// 200 expected per bin; the standard deviation is about 13, so this
	// only fails if the hash clusters.
	for b, n := range count {
		if n < 140 || n > 260 {
			t.Errorf("bin %d of %d holds %d of %d keys: %v", b, bins, n, keys, count)
		}
	}
	if len(distinct) < keys-5 {
		t.Errorf("only %d distinct delays for %d keys", len(distinct), keys)
	}
	// Keys differing only at the end (jobs of one host) spread too.
	if Jitter("web-1/app/data", limit) == Jitter("web-1/app/data/test", limit) {
		t.Error("a volume's snapshot and test jobs share an offset")
	}
}
