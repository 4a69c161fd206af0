package policy

import (
	"cmp"
	"slices"
	"strings"
	"time"
)

// Keep is a retention policy in restic's vocabulary (yaml keys last,
// hourly, daily, weekly, monthly). Each count N keeps the newest snapshot of
// each of the N most recent periods that have a snapshot; "last" treats
// every snapshot as its own period. Zero means the rule keeps nothing, and a
// negative count, which the config loader never produces, keeps every
// period, as restic's -1 does, because erring towards keeping data is the
// cheap mistake.
//
// The zero Keep, a policy that says nothing, keeps everything: an absent or
// empty keep block must never turn into "delete every snapshot".
type Keep struct {
	Last    int `yaml:"last"`
	Hourly  int `yaml:"hourly"`
	Daily   int `yaml:"daily"`
	Weekly  int `yaml:"weekly"`
	Monthly int `yaml:"monthly"`
}

// IsZero says whether the policy sets no count, and so keeps everything.
func (k Keep) IsZero() bool { return k == Keep{} }

// Snapshot is what retention needs to know of a snapshot.
type Snapshot struct {
	ID        string
	CreatedAt time.Time
	TestedOK  bool // passed a restore test
}

// Kept is a snapshot retention keeps, with every reason it is kept.
type Kept struct {
	Snapshot
	Reasons []string
}

// Reasons a snapshot is kept, in the order Kept.Reasons lists them.
const (
	ReasonLast       = "last"
	ReasonHourly     = "hourly"
	ReasonDaily      = "daily"
	ReasonWeekly     = "weekly"
	ReasonMonthly    = "monthly"
	ReasonNoPolicy   = "no policy" // the zero Keep keeps everything
	ReasonTestedGood = "newest tested good"
	ReasonOnly       = "only snapshot"
)

// period identifies the hour, day, ISO week or month a snapshot falls in.
type period struct{ a, b, c, d int }

// Retain splits snapshots into those the policy keeps and those it lets go,
// both newest first. Periods are calendar periods in loc (nil: UTC), so the
// same snapshots can fall on different days for hosts in different zones;
// the daemon passes the host's zone so "daily" means the operator's day.
//
// Beyond the policy, the newest snapshot that passed a restore test is always
// kept: without it a run of broken snapshots could rotate out the last copy
// known to restore. The newest snapshot is never removed either: the zero
// policy keeps everything, and any rule with a count keeps the newest
// snapshot, since it opens the most recent period.
//
// Snapshots with equal times are ordered by ID, the greater ID counting as
// newer (all-digit IDs compare as numbers, as the store's are), so the
// outcome does not depend on the order of the input.
func Retain(snaps []Snapshot, keep Keep, loc *time.Location) (kept []Kept, removed []Snapshot) {
	if loc == nil {
		loc = time.UTC
	}
	sorted := slices.Clone(snaps)
	slices.SortStableFunc(sorted, newerFirst)

	reasons := make([][]string, len(sorted))
	if keep.IsZero() {
		for i := range sorted {
			reasons[i] = append(reasons[i], ReasonNoPolicy)
		}
	}
	rules := []struct {
		reason string
		count  int
		period func(i int, t time.Time) period
	}{
		{ReasonLast, keep.Last, func(i int, _ time.Time) period { return period{a: i} }},
		{ReasonHourly, keep.Hourly, func(_ int, t time.Time) period {
			return period{t.Year(), int(t.Month()), t.Day(), t.Hour()}
		}},
		{ReasonDaily, keep.Daily, func(_ int, t time.Time) period {
			return period{t.Year(), int(t.Month()), t.Day(), 0}
		}},
		{ReasonWeekly, keep.Weekly, func(_ int, t time.Time) period {
			y, w := t.ISOWeek()
			return period{y, w, 0, 0}
		}},
		{ReasonMonthly, keep.Monthly, func(_ int, t time.Time) period {
			return period{t.Year(), int(t.Month()), 0, 0}
		}},
	}
	for _, r := range rules {
		// A set rather than restic's "differs from the previous one":
		// periods in loc are contiguous in time order, but a set does not
		// have to rely on that.
		seen := map[period]bool{}
		left := r.count // negative never reaches zero: every period
		for i, s := range sorted {
			if left == 0 {
				break
			}
			p := r.period(i, s.CreatedAt.In(loc))
			if seen[p] {
				continue
			}
			seen[p] = true
			reasons[i] = append(reasons[i], r.reason)
			left--
		}
	}
	if i := slices.IndexFunc(sorted, func(s Snapshot) bool { return s.TestedOK }); i >= 0 {
		reasons[i] = append(reasons[i], ReasonTestedGood)
	}
	if len(sorted) == 1 {
		reasons[0] = append(reasons[0], ReasonOnly)
	}

	for i, s := range sorted {
		if len(reasons[i]) > 0 {
			kept = append(kept, Kept{Snapshot: s, Reasons: reasons[i]})
		} else {
			removed = append(removed, s)
		}
	}
	return kept, removed
}

// newerFirst orders snapshots newest first, ties by descending ID.
func newerFirst(a, b Snapshot) int {
	if c := b.CreatedAt.Compare(a.CreatedAt); c != 0 {
		return c
	}
	return compareID(b.ID, a.ID)
}

// compareID compares IDs numerically when both are all digits, so that the
// store's "10" is newer than its "9", and as strings otherwise.
func compareID(a, b string) int {
	if digits(a) && digits(b) {
		na, nb := strings.TrimLeft(a, "0"), strings.TrimLeft(b, "0")
		if c := cmp.Compare(len(na), len(nb)); c != 0 {
			return c
		}
		if c := strings.Compare(na, nb); c != 0 {
			return c
		}
	}
	return strings.Compare(a, b) // also orders "07" and "7" apart
}

func digits(s string) bool {
	if s == "" {
		return false
	}
	for _, r := range s {
		if r < '0' || r > '9' {
			return false
		}
	}
	return true
}
