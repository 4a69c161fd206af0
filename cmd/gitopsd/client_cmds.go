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
	return queryCommand(g, &cobra.Command{Use: "status [STACK]", Short: "Show stacks: revision, sync, health, services"},
		func(ctx context.Context, c *api.Client, stack string) (api.Status, error) {
			return c.Status(ctx, stack)
		},
		printStatus)
}

func printStatus(w io.Writer, st api.Status) error {
	head := st.Source.Head
	fmt.Fprintf(w, "host %s  source %s@%s  head %s", st.Host, st.Source.URL, st.Source.Branch, ids.Short(head))
	if st.Source.FetchedAt != "" {
		fmt.Fprintf(w, "  fetched %s", st.Source.FetchedAt)
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
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", s.Name, rev, branchNote(s, head), s.Sync, s.Health, strings.Join(svcs, ", "), dash(strings.Join(drifts, ", ")), oneLine(s.Error))
	}
	return tw.Flush()
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

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return fmt.Sprintf("%d %ss", n, what)
}

func newHistoryCmd(g *globals) *cobra.Command {
	var limit int
	cmd := queryCommand(g, &cobra.Command{Use: "history [STACK]", Short: "List deployments (when, trigger, from, to, outcome, error) with their steps"},
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
	cmd := queryCommand(g, &cobra.Command{Use: "drift [STACK]", Short: "List open drifts and recently closed ones (kind, service, container, since, how closed)"},
		func(ctx context.Context, c *api.Client, stack string) ([]api.Drift, error) {
			ds, err := c.Drift(ctx, limit)
			if err != nil || stack == "" {
				return ds, err
			}
			out := []api.Drift{}
			for _, d := range ds {
				if d.Stack == stack {
					out = append(out, d)
				}
			}
			return out, nil
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
	return queryCommand(g, &cobra.Command{Use: "diff [STACK]", Short: "Show what a sync would change, without changing it"},
		func(ctx context.Context, c *api.Client, stack string) ([]api.Diff, error) { return c.Diff(ctx, stack) },
		func(w io.Writer, ds []api.Diff) error {
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
			return nil
		})
}

func newSyncCmd(g *globals) *cobra.Command {
	var retry bool
	cmd := actionCommand(g, &cobra.Command{Use: "sync [STACK]", Short: "Reconcile now (--retry: also retry a revision that failed its health gate)", Args: args(cobra.MaximumNArgs(1))},
		"synced", "sync queued",
		func(ctx context.Context, c *api.Client, a []string, wait bool) error {
			return c.Sync(ctx, first(a), retry, wait)
		})
	cmd.Flags().BoolVar(&retry, "retry", false, "also retry a revision that failed its health gate (else held until the branch moves)")
	return cmd
}

func newRollbackCmd(g *globals) *cobra.Command {
	var to string
	var withData bool
	cmd := actionCommand(g, &cobra.Command{Use: "rollback STACK", Short: "Return a stack to its last healthy revision (or --to REV) and pin it there", Args: args(cobra.ExactArgs(1))},
		"rolled back and pinned", "rollback queued",
		func(ctx context.Context, c *api.Client, a []string, wait bool) error {
			return c.Rollback(ctx, a[0], to, withData, wait)
		})
	cmd.Flags().StringVar(&to, "to", "", "revision (full or abbreviated SHA) to return to")
	cmd.Flags().BoolVar(&withData, "with-data", false, "also put back the volumes' snapshots taken before the deploy (x-gitopsd.backup.before_deploy)")
	return cmd
}

func newUnpinCmd(g *globals) *cobra.Command {
	return actionCommand(g, &cobra.Command{Use: "unpin STACK", Short: "Let a pinned stack follow the branch again", Args: args(cobra.ExactArgs(1))},
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
