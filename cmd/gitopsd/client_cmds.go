package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/gitopsd/gitopsd/internal/api"
	"github.com/gitopsd/gitopsd/internal/ids"
)

// queryCommand is a read-only command that asks the daemon for a T and
// prints it as a table, or as JSON with --json.
func queryCommand[T any](g *globals, cmd *cobra.Command, query func(context.Context, *api.Client, string) (T, error), print func(io.Writer, T) error) *cobra.Command {
	var asJSON bool
	cmd.Args = args(cobra.MaximumNArgs(1))
	cmd.ValidArgsFunction = completeStacks(g, 1)
	cmd.RunE = func(cmd *cobra.Command, a []string) error {
		return withClient(g, cmd, func(ctx context.Context, c *api.Client) error {
			v, err := query(ctx, c, first(a))
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), v)
			}
			return print(cmd.OutOrStdout(), v)
		})
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the documented JSON")
	return cmd
}

func newStatusCmd(g *globals) *cobra.Command {
	return queryCommand(g, &cobra.Command{Use: "status [STACK]", Short: "Show stacks: revision, sync, health, services",
		Long: `Show what the daemon knows of every stack of this host (or of STACK): the revision it runs
and whether it is pinned (by rollback) or held (its new revision failed its health gate), how
far the branch is ahead of it, its sync state (Synced, OutOfSync, Progressing, Invalid, Failed),
its health (Healthy, Progressing, Degraded, Unknown), its services' healthy replicas, open
drift, and the last error.

The first line names the source, its branch head, and how long ago it was fetched: status
shows the daemon's view as of that fetch (gitopsd sync fetches now).

A STACK the daemon does not know (not in the head for this host, nor in its record) is an
error (exit 1) naming the nearest known stacks.`,
		Example: `  gitopsd status
  gitopsd status web
  gitopsd status --json | jq '.stacks[] | select(.sync != "Synced") | .name'`},
		func(ctx context.Context, c *api.Client, stack string) (api.Status, error) {
			return c.Status(ctx, stack)
		},
		printStatus)
}

func printStatus(w io.Writer, st api.Status) error {
	head := st.Source.Head
	fmt.Fprintf(w, "host %s  source %s@%s  head %s", st.Host, st.Source.URL, st.Source.Branch, ids.Short(head))
	if st.Source.FetchedAt != "" {
		fmt.Fprintf(w, "  fetched %s", fetchedAgo(st.Source.FetchedAt))
	}
	fmt.Fprintln(w)
	if st.Source.Error != "" {
		fmt.Fprintf(w, "source error: %s\n", st.Source.Error)
	}
	if st.Hold != "" {
		fmt.Fprintf(w, "HOLDING, waiting for `gitopsd state adopt`: %s\n", st.Hold)
	}
	if st.Source.FetchingSince != "" {
		fmt.Fprintf(w, "fetching since %s\n", st.Source.FetchingSince)
	}
	if st.Error != "" {
		fmt.Fprintf(w, "reconcile error (%s): %s\n", st.ErrorAt, st.Error)
	}
	if st.StoreError != "" {
		fmt.Fprintf(w, "store error (since %s): %s\n", st.StoreErrorSince, st.StoreError)
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "STACK\tREVISION\tBRANCH\tSYNC\tHEALTH\tSERVICES\tDRIFT\tERROR")
	for _, s := range st.Stacks {
		var svcs []string
		for _, sv := range s.Services {
			svcs = append(svcs, fmt.Sprintf("%s %d/%d", sv.Name, sv.Healthy, sv.Replicas))
		}
		rev := ids.Short(s.Revision)
		switch {
		case s.Pinned:
			rev += " (pinned)"
		case s.Held:
			rev += " (held)"
		}
		var drifts []string
		for _, d := range s.Drift {
			if d.Service != "" {
				drifts = append(drifts, d.Kind+" "+d.Service)
			} else {
				drifts = append(drifts, d.Kind)
			}
		}
		why := oneLine(s.Error)
		if s.Hold != "" {
			// The rollout's hold says why the stack is out of sync.
			why = strings.TrimSuffix(oneLine(s.Hold)+"; "+why, "; ")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, rev, branchNote(s, head), s.Sync, s.Health, strings.Join(svcs, ", "), dash(strings.Join(drifts, ", ")), why)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	printRemoteTrouble(w, st.Stacks)
	printRestored(w, st.Stacks)
	return nil
}

// printRestored says, below the table, how each volume a deployment
// created was filled (restore: if_empty): from which snapshot, or that no
// copy existed and it started empty.
func printRestored(w io.Writer, stacks []api.StackStatus) {
	for _, s := range stacks {
		for _, b := range s.Backups {
			if b.Restored != "" {
				fmt.Fprintf(w, "volume %s of %s, created by a deployment (restore: if_empty): %s\n", b.Volume, s.Name, oneLine(b.Restored))
			}
		}
	}
}

// printRemoteTrouble names, below the table, the volumes whose off-host
// copies are failing: a copy that does not leave the host is the backup
// a dead disk takes with it, so it must not hide in --json alone.
func printRemoteTrouble(w io.Writer, stacks []api.StackStatus) {
	for _, s := range stacks {
		for _, b := range s.Backups {
			if b.RemoteLastError == "" {
				continue
			}
			last := "never"
			if b.RemoteLastSuccess != "" {
				last = b.RemoteLastSuccess
			}
			fmt.Fprintf(w, "remote copy of %s/%s failing since %s (%d pending, last copy %s): %s\n",
				s.Name, b.Volume, b.RemoteLastErrorAt, b.RemotePending, last, oneLine(b.RemoteLastError))
		}
	}
}

// branchNote says where the stack stands against the branch head.
func branchNote(s api.StackStatus, head string) string {
	switch {
	case s.Head != "" && s.BranchAhead < 0:
		return fmt.Sprintf("not at head %s (commits not counted)", ids.Short(s.Head))
	case s.Head != "":
		return fmt.Sprintf("%s ahead (head %s)", plural(s.BranchAhead, "commit"), ids.Short(s.Head))
	case s.Revision != "" && s.Revision == head:
		return "at head"
	}
	return ""
}

// fetchedAgo is an RFC 3339 time with how long ago it was.
func fetchedAgo(at string) string {
	t, err := time.Parse(time.RFC3339, at)
	if err != nil {
		return at
	}
	return at + " (" + ago(t, time.Now()) + ")"
}

// ago is how long ago t was, for people: "12s ago".
func ago(t time.Time, now time.Time) string {
	d := now.Sub(t).Round(time.Second)
	if d < 0 {
		d = 0
	}
	return d.String() + " ago"
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func newHistoryCmd(g *globals) *cobra.Command {
	var limit int
	cmd := queryCommand(g, &cobra.Command{Use: "history [STACK]", Short: "List deployments (when, trigger, from, to, outcome, error) with their steps",
		Long: `List deployments, newest first: each with its id, stack, outcome (succeeded, failed,
rolled_back, running), the revisions it went from and to, its trigger (poll, webhook,
manual, retry, heal, rollback) and start time; its error; and its steps (action,
service#replica, container, how long it took, detail, error). History is where to read
why a roll failed: nothing is cut short.

A stack removed from the repository keeps its history. A STACK the daemon does not know
is an error (exit 1) naming the nearest known stacks.`,
		Example: `  gitopsd history
  gitopsd history web --limit 5
  gitopsd history web --json | jq '.[0].steps'`},
		func(ctx context.Context, c *api.Client, stack string) ([]api.Deployment, error) {
			return c.History(ctx, stack, limit)
		},
		printHistory)
	cmd.Flags().IntVar(&limit, "limit", 50, "most deployments to list (0: all)")
	return cmd
}

// printHistory prints each deployment on a line, its error and its steps
// indented under it: action, service#replica, container, how long it
// took, detail, and the error on a line of its own. Nothing is cut short:
// history is where an operator reads why a roll failed.
func printHistory(w io.Writer, ds []api.Deployment) error {
	if len(ds) == 0 {
		_, err := fmt.Fprintln(w, "no deployments")
		return err
	}
	for _, d := range ds {
		from := ids.Short(d.From)
		if from == "" {
			from = "(none)"
		}
		fmt.Fprintf(w, "%d  %s  %s  %s -> %s  %s  started %s\n", d.ID, d.Stack, d.Outcome, from, ids.Short(d.To), d.Trigger, d.StartedAt)
		if d.Error != "" {
			// Lines kept: a failed build's error ends with the builder's
			// last lines, which read as the builder printed them.
			fmt.Fprintf(w, "    error: %s\n", strings.ReplaceAll(strings.TrimRight(d.Error, "\n"), "\n", "\n           "))
		}
		// One table per deployment, so its steps line up under it.
		tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
		for _, s := range d.Steps {
			line := fmt.Sprintf("    %s\t%s\t%s\t%s", s.Action, stepTarget(s), s.Container, time.Duration(s.DurationMS)*time.Millisecond)
			if s.Detail != "" {
				line += "\t" + flat(s.Detail)
			}
			fmt.Fprintln(tw, line)
			if s.Error != "" {
				fmt.Fprintf(tw, "    \t\t\t\terror: %s\n", flat(s.Error)) // under the detail
			}
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	return nil
}

// stepTarget is service#replica, the service alone when the replica is
// unknown, or "-" for a network or volume step.
func stepTarget(s api.Step) string {
	switch {
	case s.Service == "":
		return "-"
	case s.Replica > 0:
		return fmt.Sprintf("%s#%d", s.Service, s.Replica)
	}
	return s.Service
}

func newDriftCmd(g *globals) *cobra.Command {
	var limit int
	cmd := queryCommand(g, &cobra.Command{Use: "drift [STACK]", Short: "List open drifts and recently closed ones (kind, service, container, since, how closed)",
		Long: `List drift: differences between what runs and what the stack's revision says that
appeared without a deploy (a container stopped, removed, changed or added by hand; an image
tag moved). Open drifts come first, then the most recently closed ones with how they
closed (healed, resolved, superseded). A stack's x-gitopsd.drift policy says whether drift
is healed or only reported.

A STACK the daemon does not know is an error (exit 1) naming the nearest known stacks.`,
		Example: `  gitopsd drift
  gitopsd drift web --limit 10
  gitopsd drift --json | jq '[.[] | select(.closed_at == "")] | length'`},
		func(ctx context.Context, c *api.Client, stack string) ([]api.Drift, error) {
			return c.DriftOf(ctx, stack, limit)
		},
		printDrift)
	cmd.Flags().IntVar(&limit, "limit", 50, "most closed drifts to list besides the open ones")
	return cmd
}

// printDrift prints open drifts first, then closed ones, newest first.
func printDrift(w io.Writer, ds []api.Drift) error {
	if len(ds) == 0 {
		_, err := fmt.Fprintln(w, "no drift")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTACK\tSERVICE\tCONTAINER\tKIND\tOPENED\tCLOSED\tDETAIL")
	for _, open := range []bool{true, false} {
		for _, d := range ds {
			if (d.ClosedAt == "") != open {
				continue
			}
			closed := "open"
			if !open {
				closed = d.ClosedAt + " (" + d.ClosedBy + ")"
			}
			fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.ID, d.Stack, dash(d.Service), dash(d.Container), d.Kind, d.OpenedAt, closed, flat(d.Detail))
		}
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func newDiffCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "diff [STACK]",
		Short: "Show what a sync would change, without changing it (exit 1 if it would change something)",
		Long: `Plan every stack of this host (or STACK) against the containers that run, and print
the actions a sync would take (create, recreate, remove, start, ...), without taking them.
Images are not pulled.

The plan is made from the revision the daemon last fetched; the first line says which and
how long ago. Run gitopsd sync to fetch now (a local repository is watched, and fetched at
every push).

Exit status, as git diff --exit-code: 0 when nothing would change, 1 when something would
(or a stack does not load), 2 on a usage error.`,
		Example: `  gitopsd diff
  gitopsd diff web && echo "web is in sync"
  gitopsd diff --json | jq '.[] | select(.actions | length > 0) | .stack'`,
		Args:              args(cobra.MaximumNArgs(1)),
		ValidArgsFunction: completeStacks(g, 1),
		RunE: func(cmd *cobra.Command, a []string) error {
			return withClient(g, cmd, func(ctx context.Context, c *api.Client) error {
				ds, err := c.Diff(ctx, first(a))
				if err != nil {
					return err
				}
				w := cmd.OutOrStdout()
				if asJSON {
					if err := writeJSON(w, ds); err != nil {
						return err
					}
				} else {
					// How old the view is: a commit pushed since the last
					// fetch is not in it.
					if st, err := c.Status(ctx, first(a)); err == nil && st.Source.FetchedAt != "" {
						head := st.Source.Head
						if len(ds) > 0 && ds[0].Revision != "" {
							head = ds[0].Revision // what the plan was made from
						}
						fmt.Fprintf(w, "as of fetch %s, head %s\n", fetchedAgo(st.Source.FetchedAt), ids.Short(head))
					}
					printDiff(w, ds)
				}
				for _, d := range ds {
					if d.Error != "" || len(d.Actions) > 0 {
						return exitError{code: 1}
					}
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the documented JSON")
	return cmd
}

func printDiff(w io.Writer, ds []api.Diff) {
	for _, d := range ds {
		switch {
		case d.Error != "":
			fmt.Fprintf(w, "%s: error: %s\n", d.Stack, d.Error)
		case len(d.Actions) == 0:
			fmt.Fprintf(w, "%s: in sync\n", d.Stack)
		default:
			fmt.Fprintf(w, "%s:\n", d.Stack)
			for _, act := range d.Actions {
				fmt.Fprintf(w, "  %s\n", act)
			}
		}
		for _, v := range d.OrphanVolumes {
			fmt.Fprintf(w, "  volume %s is no longer declared (kept)\n", v)
		}
	}
}

func newSyncCmd(g *globals) *cobra.Command {
	var retry, skipWave, wait, asJSON bool
	cmd := &cobra.Command{
		Use:   "sync [STACK]",
		Short: "Reconcile now (--retry: also retry a revision that failed its health gate)",
		Long: `Fetch the source now and converge every stack of this host (or STACK) to the branch head,
as a poll would. Without --wait the request is queued and sync returns at once.

A stack whose new revision failed its health gate is held: it stays on its last healthy
revision, and polls and a plain sync leave it there until a commit changes the stack.
sync says so: with --wait a held stack is a failure (exit 1) naming it and why; without,
a note on stderr. --retry tries the failed revision again.

A stack the fleet's rollout holds on this host (status says "held by rollout: ...")
waits for the earlier waves; --skip-wave applies its new revision now, and history
records the override (trigger skip_wave). See docs/fleet.md.

Exit status: 0 done (or queued); 1 the sync failed, or left a stack held (--wait), or STACK
is unknown (the error names the nearest known stacks); 2 usage.`,
		Example: `  gitopsd sync
  gitopsd sync web --wait
  gitopsd sync web --retry --wait
  gitopsd sync web --skip-wave --wait
  gitopsd sync --wait --json`,
		Args:              args(cobra.MaximumNArgs(1)),
		ValidArgsFunction: completeStacks(g, 1),
		RunE: func(cmd *cobra.Command, a []string) error {
			return withClient(g, cmd, func(ctx context.Context, c *api.Client) error {
				if skipWave && first(a) == "" {
					return usageError{fmt.Errorf("--skip-wave needs a STACK: it overrides one stack's rollout")}
				}
				res, err := c.SyncWith(ctx, api.SyncRequest{Stack: first(a), Retry: retry, SkipWave: skipWave, Wait: wait})
				if asJSON && !api.IsUnreachable(err) {
					// The daemon answered: the document says how it went.
					res.Stack, res.Waited = first(a), wait
					if res.Held == nil {
						res.Held = []api.HeldStack{}
					}
					if err != nil && res.Error == "" {
						res.Error = err.Error() // refused: an unknown stack
					}
					if werr := writeJSON(cmd.OutOrStdout(), res); werr != nil {
						return werr
					}
					if err != nil {
						return exitError{code: 1}
					}
					return nil
				}
				if err != nil {
					return err
				}
				if wait {
					fmt.Fprintln(cmd.OutOrStdout(), "synced")
				} else {
					fmt.Fprintln(cmd.OutOrStdout(), "sync queued")
					if len(res.Held) > 0 {
						fmt.Fprintln(cmd.ErrOrStderr(), "note:", (&api.HeldError{Stacks: res.Held}).Error())
					}
				}
				return nil
			})
		},
	}
	cmd.Flags().BoolVar(&retry, "retry", false, "also retry a revision that failed its health gate (else held until the branch moves)")
	cmd.Flags().BoolVar(&skipWave, "skip-wave", false, "apply STACK's new revision now, whatever the wave of the fleet's rollout says (history records it)")
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until it has finished; exit 1 if it failed or left a stack held")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON: {stack, queued, waited, error, held: [{stack, revision, reason, by_rollout}]}")
	return cmd
}

func newRollbackCmd(g *globals) *cobra.Command {
	var to string
	var withData bool
	cmd := actionCommand(g, &cobra.Command{Use: "rollback STACK", Short: "Return a stack to its last healthy revision (or --to REV) and pin it there", Args: args(cobra.ExactArgs(1)),
		Long: `Roll STACK back to the revision it ran healthily before its current one (or to --to REV,
a full or abbreviated commit), through the same health-gated roll as a deploy, and pin it
there: polls and syncs leave a pinned stack alone until gitopsd unpin STACK.

--with-data also puts back the snapshots of its volumes taken before the deploy that is
rolled back (x-gitopsd.backup.before_deploy).

Without --wait the rollback is queued. An unknown STACK is an error (exit 1) naming the
nearest known stacks.`,
		ValidArgsFunction: completeStacks(g, 1),
		Example: `  gitopsd rollback web --wait
  gitopsd rollback web --to 3f2a9c1 --wait
  gitopsd rollback db --with-data --wait`},
		"rolled back and pinned", "rollback queued",
		func(ctx context.Context, c *api.Client, a []string, wait bool) error {
			return c.Rollback(ctx, a[0], to, withData, wait)
		})
	cmd.Flags().StringVar(&to, "to", "", "revision (full or abbreviated SHA) to return to")
	cmd.Flags().BoolVar(&withData, "with-data", false, "also put back the volumes' snapshots taken before the deploy (x-gitopsd.backup.before_deploy)")
	return cmd
}

func newUnpinCmd(g *globals) *cobra.Command {
	return actionCommand(g, &cobra.Command{Use: "unpin STACK", Short: "Let a pinned stack follow the branch again", Args: args(cobra.ExactArgs(1)),
		Long: `Let STACK, pinned by gitopsd rollback, follow the branch again: it is synced to the branch
head at once. Without --wait the unpin is queued. An unknown STACK is an error (exit 1)
naming the nearest known stacks.`,
		ValidArgsFunction: completeStacks(g, 1),
		Example:           `  gitopsd unpin web --wait`},
		"unpinned and synced", "unpin queued",
		func(ctx context.Context, c *api.Client, a []string, wait bool) error { return c.Unpin(ctx, a[0], wait) })
}

// actionCommand is a command that asks the daemon to change something, with
// --wait to block until it is done (and exit 1 if it failed).
func actionCommand(g *globals, cmd *cobra.Command, done, queued string, act func(context.Context, *api.Client, []string, bool) error) *cobra.Command {
	var wait bool
	cmd.RunE = func(cmd *cobra.Command, a []string) error {
		return withClient(g, cmd, func(ctx context.Context, c *api.Client) error {
			if err := act(ctx, c, a, wait); err != nil {
				return err
			}
			if wait {
				fmt.Fprintln(cmd.OutOrStdout(), done)
			} else {
				fmt.Fprintln(cmd.OutOrStdout(), queued)
			}
			return nil
		})
	}
	cmd.Flags().BoolVar(&wait, "wait", false, "wait until it has finished; exit 1 if it failed")
	return cmd
}

// withClient runs fn with a client of the daemon's socket and a context
// that a signal cancels.
func withClient(g *globals, cmd *cobra.Command, fn func(context.Context, *api.Client) error) error {
	c, err := newClient(g)
	if err != nil {
		return err
	}
	ctx, cancel := withSignals(cmd.Context())
	defer cancel()
	return fn(ctx, c)
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

func first(a []string) string {
	if len(a) > 0 {
		return a[0]
	}
	return ""
}

// flat puts a multi-line message on one line.
func flat(s string) string { return strings.ReplaceAll(s, "\n", " ") }

// oneLine is flat, cut to fit a table cell.
func oneLine(s string) string {
	s = flat(s)
	if len(s) > 120 {
		s = s[:117] + "..."
	}
	return s
}
