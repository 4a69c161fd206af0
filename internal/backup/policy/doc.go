// Package policy owns the pure decisions of volume backup: which snapshots a
// keep policy retains (restic's forget vocabulary: last, hourly, daily,
// weekly, monthly), when a cron schedule is due (with a single catch-up run
// after the host was off), and how far each job's activation is pushed back
// so a fleet of hosts does not snapshot in step.
//
// Nothing here touches Docker, the store or the clock: callers pass the
// snapshots, the times and the time zone, which keeps every rule testable
// and the daemon's behaviour reproducible from its inputs.
package policy
