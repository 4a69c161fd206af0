package backup

import (
	"context"
	"io"
	"log/slog"
	"testing"
	"time"

	"github.com/gitopsd/gitopsd/internal/backup/policy"
	"github.com/gitopsd/gitopsd/internal/stack"
	"github.com/gitopsd/gitopsd/internal/store"
)

// scheduleRecord is a record of one stack whose volume "data" has a daily
// snapshot and a weekly restore test; it remembers the jobs run.
type scheduleRecord struct {
	lastSnap, lastTest time.Time
	lastRemoteTest     time.Time
	snaps, tests       []string
}

func (r *scheduleRecord) Stacks(context.Context) ([]store.StackState, error) {
	return []store.StackState{{Name: "shop", Revision: "rev1"}}, nil
}

func (r *scheduleRecord) LastSnapshotStarted(context.Context, string, string, string) (time.Time, error) {
	return r.lastSnap, nil
}

func (r *scheduleRecord) LastRestoreTest(context.Context, string, string, string) (store.RestoreTest, bool, error) {
	return store.RestoreTest{StartedAt: r.lastTest}, !r.lastTest.IsZero(), nil
}

func (r *scheduleRecord) LastRemoteTest(context.Context, string, string, string, string, string) (store.RemoteTest, bool, error) {
	return store.RemoteTest{StartedAt: r.lastRemoteTest}, !r.lastRemoteTest.IsZero(), nil
}

func (r *scheduleRecord) TestRemote(_ context.Context, st *stack.Stack, _ *Config, volume string, _ int, trigger string) (store.RemoteTest, error) {
	r.tests = append(r.tests, st.Name+"/"+volume+" "+trigger+" remote")
	return store.RemoteTest{}, nil
}

func (r *scheduleRecord) Snapshot(_ context.Context, st *stack.Stack, _ *Config, volume, trigger, revision string) (store.Snapshot, error) {
	r.snaps = append(r.snaps, st.Name+"/"+volume+" "+trigger+" "+revision)
	return store.Snapshot{}, nil
}

func (r *scheduleRecord) Test(_ context.Context, st *stack.Stack, _ *Config, volume string, _ int64, _ int, trigger string) (store.RestoreTest, error) {
	r.tests = append(r.tests, st.Name+"/"+volume+" "+trigger)
	return store.RestoreTest{}, nil
}

// TestSchedulerRunsWhatIsDueByItsClock drives the schedule with an
// injected clock: nothing runs before the first activation after the
// daemon started, a missed activation runs once, and a restore test keeps
// its own schedule.
func TestSchedulerRunsWhatIsDueByItsClock(t *testing.T) {
	daily, err := policy.ParseSchedule("0 3 * * *")
	if err != nil {
		t.Fatal(err)
	}
	weekly, err := policy.ParseSchedule("@weekly")
	if err != nil {
		t.Fatal(err)
	}
	daily, weekly = daily.In(time.UTC), weekly.In(time.UTC)
	cfg := &Config{Volumes: map[string]VolumeConfig{"data": {Schedule: &daily, Test: &weekly}}}
	rec := &scheduleRecord{}
	started := time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC) // a Wednesday
	now := started
	s := &Scheduler{
		Store: rec, Jobs: rec, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Host: "edge-01", Since: started,
		Load: func(context.Context, string) (*stack.Stack, *Config, error) {
			return &stack.Stack{Name: "shop"}, cfg, nil
		},
		Now: func() time.Time { return now },
	}

	s.RunDue(context.Background())
	if len(rec.snaps)+len(rec.tests) != 0 {
		t.Fatalf("jobs ran before their first activation after the start: %v %v", rec.snaps, rec.tests)
	}
	// The next day at 04:00 (past 03:00 and any offset): the snapshot is
	// due, the weekly test is not.
	now = time.Date(2026, 3, 5, 4, 0, 0, 0, time.UTC)
	s.RunDue(context.Background())
	if len(rec.snaps) != 1 || rec.snaps[0] != "shop/data schedule rev1" || len(rec.tests) != 0 {
		t.Fatalf("on day 2: snapshots %v, tests %v; want one scheduled snapshot of shop/data at rev1 and no test", rec.snaps, rec.tests)
	}
	rec.lastSnap = now
	s.RunDue(context.Background())
	if len(rec.snaps) != 1 {
		t.Fatalf("a snapshot ran twice for one activation: %v", rec.snaps)
	}
	// Off for three days: one snapshot catches up, and the week turned.
	now = time.Date(2026, 3, 9, 4, 0, 0, 0, time.UTC)
	s.RunDue(context.Background())
	if len(rec.snaps) != 2 || len(rec.tests) != 1 || rec.tests[0] != "shop/data schedule" {
		t.Fatalf("after three missed days: snapshots %v, tests %v; want one catch-up snapshot and one restore test", rec.snaps, rec.tests)
	}
}

// TestSchedulerTestsTheRemoteCopy: with test_from: remote the scheduled
// restore test is the remote one, and its schedule counts from the last
// remote test, not from a local one.
func TestSchedulerTestsTheRemoteCopy(t *testing.T) {
	weekly, err := policy.ParseSchedule("@weekly")
	if err != nil {
		t.Fatal(err)
	}
	weekly = weekly.In(time.UTC)
	cfg := &Config{Volumes: map[string]VolumeConfig{"data": {Test: &weekly, TestFrom: TestFromRemote}}}
	started := time.Date(2026, 3, 4, 12, 0, 0, 0, time.UTC)
	now := time.Date(2026, 3, 9, 4, 0, 0, 0, time.UTC) // the week turned
	// A local scheduled test ran just now; it does not stand for the remote one.
	rec := &scheduleRecord{lastTest: now}
	s := &Scheduler{
		Store: rec, Jobs: rec, Log: slog.New(slog.NewTextHandler(io.Discard, nil)), Host: "edge-01", Since: started,
		Load: func(context.Context, string) (*stack.Stack, *Config, error) {
			return &stack.Stack{Name: "shop"}, cfg, nil
		},
		Now: func() time.Time { return now },
	}
	s.RunDue(context.Background())
	if len(rec.tests) != 1 || rec.tests[0] != "shop/data schedule remote" {
		t.Fatalf("tests %v; want one scheduled test of the remote copy", rec.tests)
	}
	rec.lastRemoteTest = now
	s.RunDue(context.Background())
	if len(rec.tests) != 1 {
		t.Fatalf("the remote test ran twice for one activation: %v", rec.tests)
	}
}
