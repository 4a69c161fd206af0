package policy

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sort"
	"strconv"
	"testing"
	"time"
)

// series is n snapshots, every step from start, IDs "0".."n-1" oldest first.
func series(start time.Time, step time.Duration, n int) []Snapshot {
	out := make([]Snapshot, n)
	for i := range out {
		out[i] = Snapshot{ID: strconv.Itoa(i), CreatedAt: start.Add(time.Duration(i) * step)}
	}
	return out
}

func keptIDs(kept []Kept) []string {
	ids := make([]string, len(kept))
	for i, k := range kept {
		ids[i] = k.ID
	}
	return ids
}

func removedIDs(removed []Snapshot) []string {
	ids := make([]string, len(removed))
	for i, s := range removed {
		ids[i] = s.ID
	}
	return ids
}

func reasonsByID(kept []Kept) map[string][]string {
	m := map[string][]string{}
	for _, k := range kept {
		m[k.ID] = k.Reasons
	}
	return m
}

// reference is retention computed another way, from the definition: group
// snapshots by a formatted period label, order the groups by their newest
// snapshot, and keep the newest snapshot of the first n groups.
func reference(snaps []Snapshot, keep Keep, loc *time.Location) map[string][]string {
	byTime := slices.Clone(snaps)
	sort.SliceStable(byTime, func(i, j int) bool { return byTime[i].CreatedAt.After(byTime[j].CreatedAt) })
	out := map[string][]string{}
	rule := func(reason string, n int, label func(time.Time) string) {
		newest := map[string]Snapshot{}
		var order []string
		for i, s := range byTime { // newest first: the first of each label wins
			l := strconv.Itoa(i) // last: every snapshot is its own period
			if label != nil {
				l = label(s.CreatedAt.In(loc))
			}
			if _, ok := newest[l]; !ok {
				newest[l] = s
				order = append(order, l)
			}
		}
		for _, l := range order[:min(n, len(order))] {
			out[newest[l].ID] = append(out[newest[l].ID], reason)
		}
	}
	rule(ReasonLast, keep.Last, nil)
	rule(ReasonHourly, keep.Hourly, func(t time.Time) string { return t.Format("2006-01-02T15") })
	rule(ReasonDaily, keep.Daily, func(t time.Time) string { return t.Format("2006-01-02") })
	rule(ReasonWeekly, keep.Weekly, func(t time.Time) string {
		y, w := t.ISOWeek()
		return fmt.Sprintf("%d-W%02d", y, w)
	})
	rule(ReasonMonthly, keep.Monthly, func(t time.Time) string { return t.Format("2006-01") })
	return out
}

func TestRetainSeries(t *testing.T) {
	// 200 snapshots every 3 hours: Mon 2024-01-01 00:00 UTC to Thu
	// 2024-01-25 21:00 UTC, ISO weeks 1 to 4 of 2024.
	start := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	snaps := series(start, 3*time.Hour, 200)
	keep := Keep{Last: 3, Daily: 7, Weekly: 4}
	// Shuffle: the result must not depend on the input order.
	shuffled := slices.Clone(snaps)
	rand.New(rand.NewPCG(1, 2)).Shuffle(len(shuffled), func(i, j int) { shuffled[i], shuffled[j] = shuffled[j], shuffled[i] })

	kept, removed := Retain(shuffled, keep, time.UTC)

	id := func(day, hour int) string { // snapshot at 2024-01-day hour:00 UTC
		return strconv.Itoa(((day-1)*24 + hour) / 3)
	}
	want := map[string][]string{
		id(25, 21): {"last", "daily", "weekly"},
		id(25, 18): {"last"},
		id(25, 15): {"last"},
		id(24, 21): {"daily"},
		id(23, 21): {"daily"},
		id(22, 21): {"daily"},
		id(21, 21): {"daily", "weekly"}, // Sunday: last of week 3
		id(20, 21): {"daily"},
		id(19, 21): {"daily"},
		id(14, 21): {"weekly"},
		id(7, 21):  {"weekly"},
	}
	if got := reasonsByID(kept); !mapsEqual(got, want) {
		t.Errorf("kept = %v\nwant   %v", got, want)
	}
	if got := reference(snaps, keep, time.UTC); !mapsEqual(got, want) {
		t.Fatalf("the test's reference disagrees with the hand-made expectation: %v", got)
	}
	wantOrder := []string{id(25, 21), id(25, 18), id(25, 15), id(24, 21), id(23, 21), id(22, 21), id(21, 21), id(20, 21), id(19, 21), id(14, 21), id(7, 21)}
	if got := keptIDs(kept); !slices.Equal(got, wantOrder) {
		t.Errorf("kept order = %v, want %v", got, wantOrder)
	}
	if len(kept)+len(removed) != len(snaps) {
		t.Fatalf("kept %d + removed %d != %d", len(kept), len(removed), len(snaps))
	}
	if !slices.IsSortedFunc(removed, func(a, b Snapshot) int { return b.CreatedAt.Compare(a.CreatedAt) }) {
		t.Error("removed not newest first")
	}
	for _, r := range removed {
		if _, ok := want[r.ID]; ok {
			t.Errorf("snapshot %s both kept and removed", r.ID)
		}
	}
}

func TestRetainTestedGood(t *testing.T) {
	start := time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)
	snaps := series(start, 3*time.Hour, 200)
	snaps[10].TestedOK = true // older, superseded
	snaps[50].TestedOK = true // 2024-01-07 06:00: no rule keeps it
	kept, removed := Retain(snaps, Keep{Last: 3, Daily: 7, Weekly: 4}, time.UTC)
	reasons := reasonsByID(kept)
	if got := reasons["50"]; !slices.Equal(got, []string{ReasonTestedGood}) {
		t.Errorf("snapshot 50 reasons = %v, want only %q", got, ReasonTestedGood)
	}
	if _, ok := reasons["10"]; ok {
		t.Error("an older tested-good snapshot was kept: only the newest is")
	}
	if len(kept) != 12 || len(removed) != 188 {
		t.Errorf("kept %d, removed %d; want 12 and 188", len(kept), len(removed))
	}

	// A newest tested-good snapshot that a rule keeps anyway gets both reasons.
	snaps[199].TestedOK = true
	kept, _ = Retain(snaps, Keep{Last: 1}, time.UTC)
	if got := keptIDs(kept); !slices.Equal(got, []string{"199"}) {
		t.Errorf("kept = %v, want [199]", got)
	}
	if got := kept[0].Reasons; !slices.Equal(got, []string{ReasonLast, ReasonTestedGood}) {
		t.Errorf("reasons = %v", got)
	}
}

func TestRetainZeroPolicyKeepsEverything(t *testing.T) {
	snaps := series(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), time.Hour, 30)
	snaps[3].TestedOK = true
	kept, removed := Retain(snaps, Keep{}, time.UTC)
	if len(removed) != 0 || len(kept) != 30 {
		t.Fatalf("kept %d, removed %v", len(kept), removedIDs(removed))
	}
	if kept[0].ID != "29" || kept[29].ID != "0" {
		t.Errorf("kept not newest first: %v", keptIDs(kept))
	}
	for _, k := range kept {
		want := []string{ReasonNoPolicy}
		if k.ID == "3" {
			want = append(want, ReasonTestedGood)
		}
		if !slices.Equal(k.Reasons, want) {
			t.Errorf("snapshot %s reasons = %v, want %v", k.ID, k.Reasons, want)
		}
	}
}

func TestRetainSmall(t *testing.T) {
	at := func(s string) time.Time {
		tm, err := time.Parse(time.RFC3339, s)
		if err != nil {
			t.Fatal(err)
		}
		return tm
	}
	snaps := []Snapshot{
		{ID: "a", CreatedAt: at("2024-01-31T10:05:00Z")},
		{ID: "b", CreatedAt: at("2024-02-01T10:40:00Z")},
		{ID: "c", CreatedAt: at("2024-02-28T10:10:00Z")},
		{ID: "d", CreatedAt: at("2024-02-28T11:10:00Z")},
		{ID: "e", CreatedAt: at("2024-02-28T12:00:00Z")},
		{ID: "f", CreatedAt: at("2024-02-28T12:59:00Z")},
	}
	for _, tc := range []struct {
		keep    Keep
		kept    []string
		removed []string
	}{
		{Keep{Last: 2}, []string{"f", "e"}, []string{"d", "c", "b", "a"}},
		{Keep{Hourly: 2}, []string{"f", "d"}, []string{"e", "c", "b", "a"}},
		{Keep{Hourly: 10}, []string{"f", "d", "c", "b", "a"}, []string{"e"}},
		{Keep{Daily: 2}, []string{"f", "b"}, []string{"e", "d", "c", "a"}},
		{Keep{Weekly: 1}, []string{"f"}, []string{"e", "d", "c", "b", "a"}},
		{Keep{Monthly: 2}, []string{"f", "a"}, []string{"e", "d", "c", "b"}},
		{Keep{Monthly: 5}, []string{"f", "a"}, []string{"e", "d", "c", "b"}},
		{Keep{Last: 1, Monthly: 2}, []string{"f", "a"}, []string{"e", "d", "c", "b"}},
		{Keep{Daily: -1}, []string{"f", "b", "a"}, []string{"e", "d", "c"}}, // negative: every period
	} {
		kept, removed := Retain(snaps, tc.keep, time.UTC)
		if got := keptIDs(kept); !slices.Equal(got, tc.kept) {
			t.Errorf("%+v: kept %v, want %v", tc.keep, got, tc.kept)
		}
		if got := removedIDs(removed); !slices.Equal(got, tc.removed) {
			t.Errorf("%+v: removed %v, want %v", tc.keep, got, tc.removed)
		}
		if tc.keep.Daily < 0 { // beyond the reference
			continue
		}
		if want := reference(snaps, tc.keep, time.UTC); !mapsEqual(reasonsByID(kept), want) {
			t.Errorf("%+v: reasons %v, reference %v", tc.keep, reasonsByID(kept), want)
		}
	}
}

func TestRetainOnlySnapshot(t *testing.T) {
	one := []Snapshot{{ID: "1", CreatedAt: time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC)}}
	kept, removed := Retain(one, Keep{Weekly: 1}, time.UTC)
	if len(removed) != 0 || len(kept) != 1 || !slices.Equal(kept[0].Reasons, []string{ReasonWeekly, ReasonOnly}) {
		t.Errorf("kept %+v, removed %v", kept, removed)
	}
	if kept, removed := Retain(nil, Keep{Last: 1}, time.UTC); kept != nil || removed != nil {
		t.Errorf("no snapshots: kept %v, removed %v", kept, removed)
	}
}

func TestRetainTimeZone(t *testing.T) {
	// 23:30 UTC on 10 January is 00:30 on the 11th in Berlin (CET, UTC+1 in
	// winter; a fixed zone keeps the test free of tzdata).
	berlin := time.FixedZone("CET", 3600)
	snaps := []Snapshot{
		{ID: "a", CreatedAt: time.Date(2024, 1, 10, 22, 0, 0, 0, time.UTC)},
		{ID: "b", CreatedAt: time.Date(2024, 1, 10, 23, 30, 0, 0, time.UTC)},
	}
	keep := Keep{Daily: 2}
	kept, removed := Retain(snaps, keep, time.UTC)
	if got := keptIDs(kept); !slices.Equal(got, []string{"b"}) || !slices.Equal(removedIDs(removed), []string{"a"}) {
		t.Errorf("UTC: kept %v, removed %v; want one day, b kept", got, removedIDs(removed))
	}
	kept, removed = Retain(snaps, keep, berlin)
	if got := keptIDs(kept); !slices.Equal(got, []string{"b", "a"}) || len(removed) != 0 {
		t.Errorf("Berlin: kept %v, removed %v; want two days, both kept", got, removedIDs(removed))
	}
	// nil is UTC.
	if kept, _ := Retain(snaps, keep, nil); !slices.Equal(keptIDs(kept), []string{"b"}) {
		t.Errorf("nil zone: kept %v", keptIDs(kept))
	}
	// The 200-snapshot series in a zone 3 hours ahead: 21:00 UTC is
	// midnight the next day, so the daily picks move to 18:00 UTC.
	plus3 := time.FixedZone("+03", 3*3600)
	long := series(time.Date(2024, 1, 1, 0, 0, 0, 0, time.UTC), 3*time.Hour, 200)
	keep = Keep{Last: 3, Daily: 7, Weekly: 4}
	kept, _ = Retain(long, keep, plus3)
	if got, want := reasonsByID(kept), reference(long, keep, plus3); !mapsEqual(got, want) {
		t.Errorf("+03: kept %v\nreference %v", got, want)
	}
	id := func(day, hour int) string { return strconv.Itoa(((day-1)*24 + hour) / 3) }
	var daily []string
	for _, k := range kept {
		if slices.Contains(k.Reasons, ReasonDaily) {
			daily = append(daily, k.ID)
		}
	}
	// 25 Jan 21:00 UTC alone makes up the 26th locally.
	wantDaily := []string{id(25, 21), id(25, 18), id(24, 18), id(23, 18), id(22, 18), id(21, 18), id(20, 18)}
	if !slices.Equal(daily, wantDaily) {
		t.Errorf("+03: daily %v, want %v", daily, wantDaily)
	}
}

func TestRetainTies(t *testing.T) {
	at := time.Date(2024, 1, 1, 3, 0, 0, 0, time.UTC)
	for _, tc := range []struct {
		ids  []string
		want string // the one treated as newest
	}{
		{[]string{"9", "10"}, "10"}, // store IDs compare as numbers
		{[]string{"10", "9"}, "10"},
		{[]string{"007", "7"}, "7"},
		{[]string{"a", "b"}, "b"},
		{[]string{"b", "a"}, "b"},
		{[]string{"10", "x"}, "x"}, // mixed: as strings
	} {
		var snaps []Snapshot
		for _, id := range tc.ids {
			snaps = append(snaps, Snapshot{ID: id, CreatedAt: at})
		}
		kept, removed := Retain(snaps, Keep{Last: 1}, time.UTC)
		if len(kept) != 1 || kept[0].ID != tc.want || len(removed) != 1 {
			t.Errorf("%v: kept %v, want %s", tc.ids, keptIDs(kept), tc.want)
		}
		// Same answer from a daily rule, and the same from any input order.
		kept2, _ := Retain([]Snapshot{snaps[1], snaps[0]}, Keep{Daily: 1}, time.UTC)
		if kept2[0].ID != tc.want {
			t.Errorf("%v reversed, daily: kept %v, want %s", tc.ids, keptIDs(kept2), tc.want)
		}
	}
}

// TestRetainInvariants checks random series and policies against the
// reference and the guarantees: the newest snapshot is never removed,
// nothing is lost or duplicated, both lists are newest first.
func TestRetainInvariants(t *testing.T) {
	r := rand.New(rand.NewPCG(7, 11))
	zones := []*time.Location{time.UTC, time.FixedZone("CET", 3600), time.FixedZone("-0930", -(9*3600 + 1800))}
	base := time.Date(2023, 12, 1, 0, 0, 0, 0, time.UTC)
	for iter := range 300 {
		n := r.IntN(60) + 1
		snaps := make([]Snapshot, n)
		seen := map[time.Time]bool{} // ties are TestRetainTies' business
		for i := range snaps {
			at := base.Add(time.Duration(r.Int64N(int64(90 * 24 * time.Hour)))).Truncate(time.Minute)
			for seen[at] {
				at = at.Add(time.Minute)
			}
			seen[at] = true
			snaps[i] = Snapshot{ID: strconv.Itoa(i), CreatedAt: at, TestedOK: r.IntN(5) == 0}
		}
		keep := Keep{Last: r.IntN(4), Hourly: r.IntN(4), Daily: r.IntN(8), Weekly: r.IntN(5), Monthly: r.IntN(4)}
		loc := zones[iter%len(zones)]
		kept, removed := Retain(snaps, keep, loc)

		if len(kept)+len(removed) != n {
			t.Fatalf("iter %d: kept %d + removed %d != %d", iter, len(kept), len(removed), n)
		}
		all := append(keptIDs(kept), removedIDs(removed)...)
		slices.Sort(all)
		if len(slices.Compact(all)) != n {
			t.Fatalf("iter %d: a snapshot is duplicated or lost", iter)
		}
		sorted := slices.Clone(snaps)
		slices.SortFunc(sorted, newerFirst)
		if len(kept) == 0 || kept[0].ID != sorted[0].ID {
			t.Fatalf("iter %d, %+v: newest snapshot %s not kept first: %v", iter, keep, sorted[0].ID, keptIDs(kept))
		}
		if !slices.IsSortedFunc(removed, newerFirst) {
			t.Fatalf("iter %d: removed not newest first", iter)
		}
		keptSnaps := make([]Snapshot, len(kept))
		for i, k := range kept {
			keptSnaps[i] = k.Snapshot
		}
		if !slices.IsSortedFunc(keptSnaps, newerFirst) {
			t.Fatalf("iter %d: kept not newest first", iter)
		}
		want := reference(snaps, keep, loc)
		if keep.IsZero() {
			want = map[string][]string{}
			for _, s := range snaps {
				want[s.ID] = []string{ReasonNoPolicy}
			}
		}
		for _, s := range sorted {
			if s.TestedOK {
				want[s.ID] = append(want[s.ID], ReasonTestedGood)
				break
			}
		}
		if n == 1 {
			want[sorted[0].ID] = append(want[sorted[0].ID], ReasonOnly)
		}
		if got := reasonsByID(kept); !mapsEqual(got, want) {
			t.Fatalf("iter %d, %+v in %s:\n got  %v\n want %v", iter, keep, loc, got, want)
		}
	}
}

func mapsEqual(a, b map[string][]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		w, ok := b[k]
		if !ok || !slices.Equal(v, w) {
			return false
		}
	}
	return true
}
