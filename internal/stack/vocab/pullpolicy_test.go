package vocab

import (
	"strings"
	"testing"
	"time"
)

func TestParsePullPolicyPeriods(t *testing.T) {
	for _, tc := range []struct {
		in    string
		every time.Duration
	}{
		{"", 0}, {"always", 0}, {"missing", 0}, {"if_not_present", 0}, {"never", 0}, {"build", 0},
		{"daily", 24 * time.Hour},
		{"weekly", 7 * 24 * time.Hour},
		{"every_12h", 12 * time.Hour},
		{"every_30m", 30 * time.Minute},
		{"every_1d12h", 36 * time.Hour},
		{"every_2w", 14 * 24 * time.Hour},
		{"every_1h30m15s", time.Hour + 30*time.Minute + 15*time.Second},
	} {
		p, err := ParsePullPolicy(tc.in)
		if err != nil || p.Every != tc.every || p.Name != tc.in {
			t.Errorf("%q: %+v, %v; want every %v", tc.in, p, err, tc.every)
		}
	}
	for _, bad := range []string{"sometimes", "refresh", "every_", "every_12", "every_h", "every_1.5h", "every_0s", "every_12H", "every_-1h", "every_99999999999999w"} {
		if p, err := ParsePullPolicy(bad); err == nil {
			t.Errorf("%q: accepted as %+v", bad, p)
		} else if !strings.Contains(err.Error(), bad) {
			t.Errorf("%q: the error does not name the value: %v", bad, err)
		}
	}
}
