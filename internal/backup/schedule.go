package backup

import (
	"context"
	"log/slog"
	"maps"
	"slices"
	"time"

	"github.com/gitopsd/gitopsd/internal/backup/policy"
	"github.com/gitopsd/gitopsd/internal/stack"
	"github.com/gitopsd/gitopsd/internal/store"
)

// ScheduleStore is what the scheduler reads of the record: the stacks, and
// when each volume's scheduled jobs last ran.
type ScheduleStore interface {
	Stacks(ctx context.Context) ([]store.StackState, error)
	LastSnapshotStarted(ctx context.Context, stack, volume, trigger string) (time.Time, error)
	LastRestoreTest(ctx context.Context, stack, volume, trigger string) (store.RestoreTest, bool, error)
	LastRemoteTest(ctx context.Context, host, stack, volume, name, trigger string) (store.RemoteTest, bool, error)
}

// Jobs takes snapshots and restore-tests them (Runner).
type Jobs interface {
	Snapshot(ctx context.Context, st *stack.Stack, cfg *Config, volume, trigger, revision string) (store.Snapshot, error)
	Test(ctx context.Context, st *stack.Stack, cfg *Config, volume string, id int64, level int, trigger string) (store.RestoreTest, error)
	TestRemote(ctx context.Context, st *stack.Stack, cfg *Config, volume string, level int, trigger string) (store.RemoteTest, error)
}

// Scheduler runs the snapshots and restore tests whose schedule came due.
// The daemon calls RunDue from its loop every few seconds, so a stop for a
// consistent snapshot is never fought by a sync or a heal.
type Scheduler struct {
	Store ScheduleStore
	Jobs  Jobs
	// Load gives a stack as the live view shows it, with its backup
	// config (nil: it backs up nothing).
	Load func(ctx context.Context, name string) (*stack.Stack, *Config, error)
	Log  *slog.Logger
	// Host names this host in each job's offset, so a fleet does not
	// snapshot in step.
	Host string
	// Since is when the daemon started: a schedule new to it counts from here.
	Since time.Time
	// Now is the clock that decides what is due (time.Now when nil).
	Now func() time.Time
}

// RunDue runs the snapshots and restore tests whose schedule came due, a
// missed one once (the host was off at 03:00), each delayed by a small
// offset of its own.
func (s *Scheduler) RunDue(ctx context.Context) {
	states, err := s.Store.Stacks(ctx)
	if err != nil {
		s.Log.Error("backup schedule: read stacks", "err", err)
		return
	}
	now := time.Now()
	if s.Now != nil {
		now = s.Now()
	}
	for _, row := range states {
		st, cfg, err := s.Load(ctx, row.Name)
		if err != nil || cfg == nil {
			continue // an invalid backup config is reported by validate and by backup run
		}
		for _, v := range slices.Sorted(maps.Keys(cfg.Volumes)) {
			vc := cfg.Volumes[v]
			if vc.Schedule != nil {
				last := s.lastSnapshot(ctx, row.Name, v)
				if due(*vc.Schedule, last, s.Since, now, s.Host+"/"+row.Name+"/"+v) {
					if _, err := s.Jobs.Snapshot(ctx, st, cfg, v, TriggerSchedule, row.Revision); err != nil {
						s.Log.Error("scheduled snapshot failed", "stack", row.Name, "volume", v, "err", err)
					}
				}
			}
			if vc.Test != nil {
				s.runTest(ctx, st, cfg, v, vc, now)
			}
		}
	}
}

// runTest runs a volume's scheduled restore test if it came due, on the
// local snapshot or on the remote copy (test_from).
func (s *Scheduler) runTest(ctx context.Context, st *stack.Stack, cfg *Config, volume string, vc VolumeConfig, now time.Time) {
	var last time.Time
	if vc.TestFrom == TestFromRemote {
		// Any copy's test counts: a test that found no copy records
		// nothing, so it is tried again at the next activation.
		if t, ok, err := s.Store.LastRemoteTest(ctx, s.Host, st.Name, volume, "", TriggerSchedule); err == nil && ok {
			last = t.StartedAt
		}
	} else if t, ok, err := s.Store.LastRestoreTest(ctx, st.Name, volume, TriggerSchedule); err == nil && ok {
		last = t.StartedAt
	}
	if !due(*vc.Test, last, s.Since, now, s.Host+"/"+st.Name+"/"+volume+"/test") {
		return
	}
	var err error
	if vc.TestFrom == TestFromRemote {
		_, err = s.Jobs.TestRemote(ctx, st, cfg, volume, 0, TriggerSchedule)
	} else {
		_, err = s.Jobs.Test(ctx, st, cfg, volume, 0, 0, TriggerSchedule)
	}
	if err != nil {
		s.Log.Error("scheduled restore test failed", "stack", st.Name, "volume", volume, "from", vc.TestFrom, "err", err)
	}
}

// lastSnapshot is when the volume's last scheduled snapshot started (ok or
// not: a failing one is not retried before its next activation).
func (s *Scheduler) lastSnapshot(ctx context.Context, stackName, volume string) time.Time {
	at, err := s.Store.LastSnapshotStarted(ctx, stackName, volume, TriggerSchedule)
	if err != nil {
		s.Log.Warn("backup schedule: read the last snapshot", "stack", stackName, "volume", volume, "err", err)
	}
	return at
}

// due says whether a schedule's job runs now, its activation pushed back by
// the job's own offset (stable per host and job, at most the schedule's
// jitter window).
func due(s policy.Schedule, last, since, now time.Time, key string) bool {
	offset := policy.Jitter(key, s.JitterMax(now))
	return s.Due(last, since, now.Add(-offset))
}
