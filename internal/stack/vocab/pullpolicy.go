package vocab

import (
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"
)

// Pull policies of the compose specification.
const (
	PullAlways       = "always"
	PullNever        = "never"
	PullMissing      = "missing"
	PullIfNotPresent = "if_not_present" // compose's older name of missing
	PullBuild        = "build"
	PullDaily        = "daily"
	PullWeekly       = "weekly"
	// PullEveryPrefix starts the periodic policies such as every_12h.
	PullEveryPrefix = "every_"
)

// PullPolicy is a service's pull_policy, read.
type PullPolicy struct {
	Name string // as written; "" is missing
	// Every is the period of daily, weekly and every_<duration>: the image
	// is pulled again once its last pull is older. 0 for the other policies.
	Every time.Duration
}

// ParsePullPolicy reads compose's pull_policy values: always, never,
// missing (or if_not_present, or nothing), build, daily, weekly and
// every_<duration> with compose's units w, d, h, m and s (every_12h,
// every_1d12h, every_30m).
func ParsePullPolicy(s string) (PullPolicy, error) {
	p := PullPolicy{Name: s}
	switch {
	case s == "", s == PullMissing, s == PullIfNotPresent, s == PullAlways, s == PullNever, s == PullBuild:
	case s == PullDaily:
		p.Every = 24 * time.Hour
	case s == PullWeekly:
		p.Every = 7 * 24 * time.Hour
	case strings.HasPrefix(s, PullEveryPrefix):
		d, err := parseComposeDuration(strings.TrimPrefix(s, PullEveryPrefix))
		if err != nil {
			return PullPolicy{}, fmt.Errorf("pull_policy %q: %w", s, err)
		}
		p.Every = d
	default:
		return PullPolicy{}, fmt.Errorf("pull_policy %q: want always, missing, if_not_present, never, build, daily, weekly or every_<duration> (every_12h)", s)
	}
	return p, nil
}

// MayPull: the policy lets gitopsd pull the image when the host lacks it
// (never does not; build leaves images to the builder).
func (p PullPolicy) MayPull() bool { return p.Name != PullNever && p.Name != PullBuild }

// composeDurationRE is compose's every_ syntax: numbers with a unit each.
var composeDurationRE = regexp.MustCompile(`^(?:[0-9]+[wdhms])+$`)

var composeUnits = map[byte]time.Duration{'w': 7 * 24 * time.Hour, 'd': 24 * time.Hour, 'h': time.Hour, 'm': time.Minute, 's': time.Second}

// parseComposeDuration reads "12h", "1d12h", "2w", "90m": Go's durations
// lack the days and weeks compose allows.
func parseComposeDuration(s string) (time.Duration, error) {
	if !composeDurationRE.MatchString(s) {
		return 0, errors.New("the period must be numbers with units w, d, h, m or s, such as 12h or 1d12h")
	}
	var total time.Duration
	for rest := s; rest != ""; {
		i := strings.IndexAny(rest, "wdhms")
		n, err := strconv.ParseInt(rest[:i], 10, 64)
		unit := composeUnits[rest[i]]
		if err != nil || n > int64((1<<63-1)/unit) {
			return 0, errors.New("the period is too long")
		}
		total += time.Duration(n) * unit
		rest = rest[i+1:]
	}
	if total <= 0 {
		return 0, errors.New("the period must be longer than 0")
	}
	return total, nil
}
