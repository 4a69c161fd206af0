package daemon

import (
	"context"
	"regexp"

	"github.com/gitopsd/gitopsd/internal/ids"
	"github.com/gitopsd/gitopsd/internal/report"
	"github.com/gitopsd/gitopsd/internal/store"
	"github.com/gitopsd/gitopsd/internal/sync"
)

// Commit statuses (config report:, docs/fleet.md "Commit statuses"). The
// reconciler knows nothing of them: the daemon says "a roll starts" once,
// and after each reconcile derives every stack's status from its row in
// one place (statusOf), so that what the commit shows is what `gitopsd
// status` shows. The reporter queues and never blocks the loop.

// newReporter builds the reporter from config report: (nil when no
// provider is set). The token file is read here once, so a missing or
// empty file stops the daemon at start rather than at the first roll.
func (d *Daemon) newReporter() error {
	r := d.cfg.Report
	if r.Provider == "" {
		return nil
	}
	rep, err := report.New(report.Config{Provider: report.Provider(r.Provider), URL: r.URL, TokenFile: r.TokenFile,
		SourceURL: d.cfg.Source.URL, Host: d.host.Name, Log: d.log})
	if err != nil {
		return err
	}
	d.reporter = rep
	return nil
}

// runReporter sends the queued statuses beside the loop until ctx ends.
func (d *Daemon) runReporter(ctx context.Context) {
	if d.reporter != nil {
		go d.reporter.Run(ctx)
	}
}

// reportRolling: a roll of stack to revision starts.
func (d *Daemon) reportRolling(stack, revision string) {
	if d.reporter == nil || !fullSHA.MatchString(revision) {
		return
	}
	d.reporter.Set(report.Update{Stack: stack, SHA: revision, State: report.Running,
		Description: "rolling to " + ids.Short(revision) + " on " + d.host.Name})
}

// reportStacks sets the status of every stack (or only the named one)
// from its row, after a reconcile.
func (d *Daemon) reportStacks(ctx context.Context, only string) {
	if d.reporter == nil {
		return
	}
	rows, err := d.store.Stacks(ctx)
	if err != nil {
		d.log.Warn("commit statuses: read the stacks", "err", err)
		return
	}
	for _, s := range rows {
		if only != "" && s.Name != only {
			continue
		}
		if u, ok := statusOf(s, d.host.Name, d.rolloutHold(s.Name)); ok {
			d.reporter.Set(u)
		}
	}
}

var fullSHA = regexp.MustCompile(`^[0-9a-f]{40}$`)

// statusOf is the commit status a stack's row means, with hold, what the
// rollout says of it ("held by rollout: ..."; "" when it does not hold
// it), and on which commit:
//   - held by the rollout: pending on the revision held back (the row's
//     Target), with why;
//   - Invalid, or Failed (a failed roll, a rollback): failure on the
//     revision wanted (Target: the rolled-back one after a rollback), with
//     the row's error;
//   - Synced and Healthy: success on the revision it runs;
//   - Progressing: a roll runs (pending).
//
// Anything else (OutOfSync, Synced but not Healthy yet) changes nothing:
// the last status stands until the stack is one of the above.
func statusOf(s store.StackState, host, hold string) (report.Update, bool) {
	u := report.Update{Stack: s.Name}
	if hold != "" {
		u.SHA, u.State, u.Description = s.Target, report.Pending, hold+" ("+host+")"
	} else {
		switch sync.SyncState(s.Sync) {
		case sync.Invalid:
			u.SHA, u.State, u.Description = s.Target, report.Failure, "Invalid on "+host+": "+s.Error
		case sync.Failed:
			u.SHA, u.State, u.Description = s.Target, report.Failure, "failed on "+host+": "+s.Error
		case sync.Synced:
			if s.Health != string(sync.Healthy) {
				return u, false
			}
			u.SHA, u.State, u.Description = s.Revision, report.Success, "Synced and Healthy on "+host
		case sync.Progressing:
			u.SHA, u.State, u.Description = s.Target, report.Running, "rolling to "+ids.Short(s.Target)+" on "+host
		default:
			return u, false
		}
	}
	return u, fullSHA.MatchString(u.SHA)
}
