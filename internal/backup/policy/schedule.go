package policy

import (
	"fmt"
	"strings"
	"time"

	"github.com/robfig/cron/v3"
)

// Schedule is a parsed cron expression: five fields (minute hour
// day-of-month month day-of-week) or a descriptor (@hourly, @daily,
// @midnight, @weekly, @monthly, @yearly, @annually, @every <duration>).
// Activations are wall-clock times in the host's zone unless the expression
// names its own with a CRON_TZ= prefix.
//
// The zero Schedule never activates.
type Schedule struct {
	expr  string
	sched cron.Schedule
	loc   *time.Location // nil: time.Local
}

// ParseSchedule parses a cron expression or descriptor. Errors name the
// expression, since they reach the operator through the stack's config.
func ParseSchedule(expr string) (s Schedule, err error) {
	bad := func(why string, a ...any) error {
		return fmt.Errorf("schedule %q: %s", expr, fmt.Sprintf(why, a...))
	}
	spec := strings.TrimSpace(expr)
	if spec == "" {
		return Schedule{}, bad("empty")
	}
	// robfig/cron indexes past the end of some malformed inputs ("TZ=UTC"
	// with nothing after it); the expression comes from a git repository,
	// so a typo must be an error, not a crash.
	defer func() {
		if r := recover(); r != nil {
			s, err = Schedule{}, bad("malformed")
		}
	}()
	if d, ok := strings.CutPrefix(spec, "@every "); ok {
		// robfig/cron silently turns a zero, negative or sub-second
		// interval into one second; snapshotting every second is never
		// what was meant.
		if dur, perr := time.ParseDuration(strings.TrimSpace(d)); perr == nil && dur < time.Second {
			return Schedule{}, bad("@every needs an interval of at least 1s, got %s", strings.TrimSpace(d))
		}
	}
	sched, err := cron.ParseStandard(spec)
	if err != nil {
		return Schedule{}, bad("%v", err)
	}
	s = Schedule{expr: expr, sched: sched}
	// A schedule that never fires (0 0 30 2 *) would silently never back
	// anything up.
	if s.Next(time.Now()).IsZero() {
		return Schedule{}, bad("never activates")
	}
	return s, nil
}

// String is the expression as written.
func (s Schedule) String() string { return s.expr }

// In is the schedule evaluated in loc instead of the host's zone; an
// expression's own CRON_TZ= still wins. Tests use it to stay independent of
// the machine's zone.
func (s Schedule) In(loc *time.Location) Schedule {
	s.loc = loc
	return s
}

func (s Schedule) location() *time.Location {
	if s.loc == nil {
		return time.Local
	}
	return s.loc
}

// Next is the first activation strictly after t, or the zero time if there
// is none. t may be in any zone: the schedule is evaluated in its own, not
// t's, because stored times come back in UTC and "0 3 * * *" means 03:00 on
// the host, not 03:00 UTC.
func (s Schedule) Next(t time.Time) time.Time {
	if s.sched == nil {
		return time.Time{}
	}
	return s.sched.Next(t.In(s.location()))
}

// Due says whether a job last run at lastRun (zero: never) should run at
// now: whether an activation fell in (lastRun, now]. However many
// activations were missed, say while the host was off at 03:00, the answer
// is a single true: the run that follows moves lastRun past them all, so
// the job catches up once rather than once per missed activation.
//
// A job that never ran is measured from since, when it was first seen: it
// waits for its first activation after since instead of firing as soon as
// the schedule appears (a daemon restart or a new stack must not set off a
// burst of snapshots). With since zero as well there is nothing to wait
// from, and the job is due.
//
// If the clock went back behind lastRun, the job waits until the clock
// passes lastRun's next activation again rather than running twice.
func (s Schedule) Due(lastRun, since, now time.Time) bool {
	if s.sched == nil {
		return false
	}
	from := lastRun
	if from.IsZero() {
		from = since
	}
	if from.IsZero() {
		return true
	}
	next := s.Next(from)
	return !next.IsZero() && !next.After(now)
}

// JitterMax is the largest jitter worth adding to the schedule's
// activations after the given time: 10% of the gap between the next two
// activations, at most 5 minutes, so that jitter spreads a fleet without
// ever pushing a run close to the next one. It is 0 for a schedule that does
// not activate twice.
func (s Schedule) JitterMax(after time.Time) time.Duration {
	a := s.Next(after)
	if a.IsZero() {
		return 0
	}
	b := s.Next(a)
	if b.IsZero() {
		return 0
	}
	return min(DefaultJitterMax, b.Sub(a)/10)
}
