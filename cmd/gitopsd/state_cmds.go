package main

import (
	"context"
	"fmt"
	"path/filepath"

	"github.com/spf13/cobra"

	"github.com/gitopsd/gitopsd/internal/api"
)

func newStateCmd(g *globals) *cobra.Command {
	cmd := group(&cobra.Command{Use: "state", Short: "The daemon's own record: back it up, or adopt running stacks after it was lost",
		Long: `The daemon's own record (SQLite under state_dir): write a consistent copy of it, or, after
it was lost, take the stacks that run as the starting point again.`,
		Example: `  gitopsd state backup /var/backups/gitopsd-$(date +%F).db
  gitopsd state adopt --wait`})
	cmd.AddCommand(newStateBackupCmd(g), newStateAdoptCmd(g))
	return cmd
}

func newStateBackupCmd(g *globals) *cobra.Command {
	return &cobra.Command{
		Use:   "backup FILE",
		Short: "Write a consistent copy of the daemon's database to FILE (a new file on the daemon's host)",
		Long: "Write a consistent copy of the daemon's database (SQLite VACUUM INTO) to FILE, which must not exist.\n" +
			"To restore it: stop gitopsd, copy FILE to state_dir/gitopsd.db, remove gitopsd.db-wal and gitopsd.db-shm, start gitopsd.",
		Example: "  gitopsd state backup /var/backups/gitopsd.db",
		Args:    args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			// The daemon writes the file: a relative name means the
			// caller's folder, not the daemon's.
			path, err := filepath.Abs(a[0])
			if err != nil {
				return usageError{fmt.Errorf("state backup %s: %w", a[0], err)}
			}
			return withClient(g, cmd, func(ctx context.Context, c *api.Client) error {
				if err := c.StateBackup(ctx, path); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), "state written to", path)
				return nil
			})
		},
	}
}

func newStateAdoptCmd(g *globals) *cobra.Command {
	return actionCommand(g, &cobra.Command{
		Use:   "adopt",
		Short: "Accept the running containers as the starting point after the record was lost, and reconcile",
		Long: "A daemon that starts with an empty record while containers it deployed run touches no stack (status shows why).\n" +
			"adopt records those stacks with the revision they run as their last healthy one and reconciles as usual.\n" +
			"Pins (rollback) and held revisions that were in the lost record are not known any more; restore a state backup instead to keep them.",
		Example: "  gitopsd state adopt --wait",
		Args:    args(cobra.NoArgs),
	}, "adopted and reconciled", "adopted; reconcile queued",
		func(ctx context.Context, c *api.Client, _ []string, wait bool) error {
			return c.StateAdopt(ctx, wait)
		})
}
