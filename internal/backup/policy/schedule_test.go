package policy

import (
	"strings"
	"testing"
	"time"
)

// zone is a fixed zone two hours ahead of UTC, so the tests do not depend on
// the machine's zone or on tzdata.
var zone = time.FixedZone("+02", 2*3600)

func mustParse(t *testing.T, expr string) Schedule {
	t.Helper()
	s, err := ParseSchedule(expr)
	if err != nil {
		t.Fatalf("ParseSchedule(%q): %v", expr, err)
	}
	return s.In(zone)
}

func local(y int, m time.Month, d, h, minute int) time.Time {
	return time.Date(y, m, d, h, minute, 0, 0, zone)
}

func TestParseScheduleErrors(t *testing.T) {
	for _, tc := range []struct{ expr, why string }{
		{"61 * * * *", "61"},
		{"* 24 * * *", "24"},
		{"", "empty"},
		{"   ", "empty"},
		{"* * * *", "expected exactly 5 fields"},
		{"0 0 * * * *", "expected exactly 5 fields"}, // seconds are not standard cron
		{"@fortnightly", "unrecognized descriptor"},
		{"@every banana", "failed to parse duration"},
		{"@every 0s", "at least 1s"},
		{"@every -5m", "at least 1s"},
		{"@every 500ms", "at least 1s"},
		{"TZ=UTC", "malformed"}, // robfig/cron would panic
		{"CRON_TZ=Nowhere/Atlantis 0 3 * * *", "bad location"},
		{"0 0 30 2 *", "never activates"}, // 30 February
		{"0 3 * * mon-fun", "fun"},
	} {
		_, err := ParseSchedule(tc.expr)
		if err == nil {
			t.Errorf("ParseSchedule(%q): no error", tc.expr)
			continue
		}
		prefix := "schedule \"" + tc.expr + "\": "
		if msg := err.Error(); !strings.HasPrefix(msg, prefix) || !strings.Contains(msg, tc.why) {
			t.Errorf("ParseSchedule(%q) = %q, want %q...%q", tc.expr, msg, prefix, tc.why)
		}
	}
}

func TestParseScheduleAccepts(t *testing.T) {
	for _, expr := range []string{
		"0 3 * * *", "*/15 * * * *", "30 2 * * 1-5", "0 0 1 jan,jul *", " 0 3 * * * ",
		"@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually",
		"@every 90m", "@every 1h30m", "CRON_TZ=UTC 0 3 * * *",
	} {
		s, err := ParseSchedule(expr)
		if err != nil {
			t.Errorf("ParseSchedule(%q): %v", expr, err)
			continue
		}
		if s.String() != expr {
			t.Errorf("String() = %q, want %q", s.String(), expr)
		}
	}
}

func TestNext(t *testing.T) {
	for _, tc := range []struct {
		expr     string
		from     time.Time
		want     time.Time
		describe string
	}{
		{"0 3 * * *", local(2024, 5, 1, 2, 59), local(2024, 5, 1, 3, 0), "later that night"},
		{"0 3 * * *", local(2024, 5, 1, 3, 0), local(2024, 5, 2, 3, 0), "strictly after"},
		{"0 3 * * *", local(2024, 5, 1, 3, 0).Add(-time.Nanosecond), local(2024, 5, 1, 3, 0), "from just before"},
		{"0 3 * * *", local(2024, 12, 31, 23, 0), local(2025, 1, 1, 3, 0), "over the new year"},
		{"@weekly", local(2024, 5, 1, 12, 0), local(2024, 5, 5, 0, 0), "Wednesday to Sunday midnight"},
		{"@weekly", local(2024, 5, 5, 0, 0), local(2024, 5, 12, 0, 0), "Sunday midnight to the next"},
		{"@daily", local(2024, 5, 1, 12, 0), local(2024, 5, 2, 0, 0), ""},
		{"@monthly", local(2024, 5, 1, 0, 0), local(2024, 6, 1, 0, 0), ""},
		{"@every 90m", local(2024, 5, 1, 12, 0), local(2024, 5, 1, 13, 30), "from the time given"},
		{"@every 90m", local(2024, 5, 1, 13, 30), local(2024, 5, 1, 15, 0), ""},
		{"CRON_TZ=UTC 0 3 * * *", local(2024, 5, 1, 4, 0), local(2024, 5, 1, 5, 0), "its own zone wins"},
	} {
		got := mustParse(t, tc.expr).Next(tc.from)
		if !got.Equal(tc.want) {
			t.Errorf("%q.Next(%v) = %v, want %v (%s)", tc.expr, tc.from, got, tc.want, tc.describe)
		}
	}
}

// TestNextUsesScheduleZone: stored times come back in UTC, and "0 3 * * *"
// still means 03:00 in the schedule's zone.
func TestNextUsesScheduleZone(t *testing.T) {
	s := mustParse(t, "0 3 * * *")
	from := time.Date(2024, 5, 1, 0, 0, 0, 0, time.UTC) // 02:00 in zone
	if got, want := s.Next(from), local(2024, 5, 1, 3, 0); !got.Equal(want) {
		t.Errorf("Next(%v) = %v, want %v", from, got, want)
	}
	// Without In, the host's zone.
	plain, _ := ParseSchedule("0 3 * * *")
	if got, want := plain.Next(from), plain.In(time.Local).Next(from.In(time.Local)); !got.Equal(want) {
		t.Errorf("default zone: Next = %v, want %v (time.Local)", got, want)
	}
	if got := plain.Next(from); got.Location() != time.Local || got.Hour() != 3 {
		t.Errorf("default zone: Next = %v, want 03:00 host time", got)
	}
}

func TestDue(t *testing.T) {
	s := mustParse(t, "0 3 * * *")
	since := local(2024, 4, 1, 0, 0)
	lastRun := local(2024, 5, 1, 3, 0).Add(4 * time.Second) // ran at 03:00:04

	// The host was off from 1 May 20:00 to 4 May 10:00, missing three
	// activations: one catch-up run, not three.
	now := local(2024, 5, 4, 10, 0)
	if !s.Due(lastRun, since, now) {
		t.Error("missed activations while off: want due")
	}
	lastRun = now.Add(5 * time.Second) // the catch-up run
	for _, now := range []time.Time{
		lastRun.Add(time.Second), local(2024, 5, 4, 12, 0), local(2024, 5, 5, 2, 59),
	} {
		if s.Due(lastRun, since, now) {
			t.Errorf("ran at %v: due at %v, want not until 5 May 03:00", lastRun, now)
		}
	}
	if !s.Due(lastRun, since, local(2024, 5, 5, 3, 0)) {
		t.Error("not due at the next activation, 5 May 03:00")
	}

	// Before its activation on a normal day, then at it, then after the run.
	lastRun = local(2024, 5, 5, 3, 0)
	if s.Due(lastRun, since, local(2024, 5, 5, 3, 0)) {
		t.Error("due again at the activation it just ran for")
	}

	// A stored lastRun in UTC is compared in the schedule's zone: it ran at
	// 03:00 local (01:00 UTC); at 05:30 local (03:30 UTC) it is not due
	// again, though 03:00 UTC lies between.
	ranUTC := time.Date(2024, 5, 1, 1, 0, 0, 0, time.UTC)
	if s.Due(ranUTC, since, time.Date(2024, 5, 1, 3, 30, 0, 0, time.UTC)) {
		t.Error("lastRun in UTC: due at 03:00 UTC, want 03:00 in the schedule's zone")
	}

	// The clock went back behind lastRun: wait, don't run twice.
	if s.Due(local(2024, 5, 5, 3, 0), since, local(2024, 5, 4, 9, 0)) {
		t.Error("clock behind lastRun: want not due")
	}
}

func TestDueNeverRun(t *testing.T) {
	s := mustParse(t, "0 3 * * *")
	since := local(2024, 5, 1, 10, 0) // first seen mid-morning
	for _, now := range []time.Time{since, since.Add(time.Minute), local(2024, 5, 2, 2, 59)} {
		if s.Due(time.Time{}, since, now) {
			t.Errorf("never run, first seen %v: due at %v, want not before 2 May 03:00", since, now)
		}
	}
	for _, now := range []time.Time{local(2024, 5, 2, 3, 0), local(2024, 5, 9, 0, 0)} {
		if !s.Due(time.Time{}, since, now) {
			t.Errorf("never run: not due at %v", now)
		}
	}
	if !s.Due(time.Time{}, time.Time{}, since) {
		t.Error("never run, since unknown: want due")
	}

	every := mustParse(t, "@every 90m")
	if every.Due(time.Time{}, since, since.Add(89*time.Minute)) || !every.Due(time.Time{}, since, since.Add(90*time.Minute)) {
		t.Error("@every 90m: want due 90 minutes after since, not before")
	}
	if every.Due(since, time.Time{}, since.Add(time.Hour)) || !every.Due(since, time.Time{}, since.Add(5*time.Hour)) {
		t.Error("@every 90m after a run: wrong")
	}
}

func TestZeroSchedule(t *testing.T) {
	var s Schedule
	now := local(2024, 5, 1, 0, 0)
	if !s.Next(now).IsZero() || s.Due(time.Time{}, time.Time{}, now) || s.JitterMax(now) != 0 || s.String() != "" {
		t.Error("the zero Schedule must never activate")
	}
}

func TestJitterMax(t *testing.T) {
	after := local(2024, 5, 1, 12, 0)
	for _, tc := range []struct {
		expr string
		want time.Duration
	}{
		{"0 3 * * *", 5 * time.Minute},     // 10% of a day, capped
		{"@hourly", 5 * time.Minute},       // 6 minutes, capped
		{"@every 10m", time.Minute},        // 10%
		{"*/5 * * * *", 30 * time.Second},  // 10%
		{"@every 30m", 3 * time.Minute},    // 10%
		{"0 12,13 * * *", 5 * time.Minute}, // next two: 13:00, then 12:00 the next day
		{"0 13,14 * * *", 6 * time.Minute}, // next two: 13:00 and 14:00
	} {
		if got := mustParse(t, tc.expr).JitterMax(after); got != min(tc.want, DefaultJitterMax) {
			t.Errorf("%q.JitterMax = %v, want %v", tc.expr, got, min(tc.want, DefaultJitterMax))
		}
	}
}
