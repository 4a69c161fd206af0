package main

import (
	"context"
	"fmt"
	"io"
	"strconv"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/gitopsd/gitopsd/internal/api"
)

func newBackupCmd(g *globals) *cobra.Command {
	cmd := &cobra.Command{Use: "backup", Short: "Volume snapshots: list, run, test, restore"}
	cmd.AddCommand(newBackupListCmd(g), newBackupRunCmd(g), newBackupTestCmd(g), newBackupRestoreCmd(g))
	return cmd
}

func newBackupListCmd(g *globals) *cobra.Command {
	return queryCommand(g, &cobra.Command{Use: "list [STACK]", Short: "List snapshots, newest first"},
		func(ctx context.Context, c *api.Client, stack string) ([]api.Snapshot, error) {
			return c.Snapshots(ctx, stack)
		},
		printSnapshots)
}

func printSnapshots(w io.Writer, ss []api.Snapshot) error {
	if len(ss) == 0 {
		_, err := fmt.Fprintln(w, "no snapshots")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTACK\tVOLUME\tCREATED\tSTATUS\tSIZE\tFILES\tTESTED\tERROR")
	for _, s := range ss {
		tested := "-"
		switch {
		case s.TestedAt != "" && s.LastTestOK:
			tested = fmt.Sprintf("ok (level %d) %s", s.LastTestLevel, s.TestedAt)
		case s.TestedAt != "":
			tested = fmt.Sprintf("FAILED (level %d) %s", s.LastTestLevel, s.TestedAt)
		}
		msg := s.Error
		if msg == "" {
			msg = s.LastTestError
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", s.ID, s.Stack, s.Volume, s.CreatedAt, s.Status, s.SizeBytes, s.Files, tested, dash(flat(msg)))
	}
	return tw.Flush()
}

func newBackupRunCmd(g *globals) *cobra.Command {
	return actionCommand(g, &cobra.Command{Use: "run STACK [VOLUME]", Short: "Snapshot a stack's volume (every one it backs up by default) now", Args: args(cobra.RangeArgs(1, 2))},
		"snapshot taken", "snapshot queued",
		func(ctx context.Context, c *api.Client, a []string, wait bool) error {
			return c.BackupRun(ctx, a[0], second(a), wait)
		})
}

func newBackupTestCmd(g *globals) *cobra.Command {
	var level int
	cmd := &cobra.Command{Use: "test STACK [VOLUME]", Short: "Restore-test the newest good snapshot now; exit 1 if it fails", Args: args(cobra.RangeArgs(1, 2)),
		RunE: func(cmd *cobra.Command, a []string) error {
			if level < 0 || level > 3 {
				return usageError{fmt.Errorf("--level must be 1, 2 or 3")}
			}
			return withClient(g, cmd, func(ctx context.Context, c *api.Client) error {
				if err := c.BackupTest(ctx, a[0], second(a), level); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), "restore test passed")
				return nil
			})
		}}
	cmd.Flags().IntVar(&level, "level", 0, "1: hashes; 2: restore into a scratch volume and compare; 3: also run verify (default: the volume's own)")
	return cmd
}

func newBackupRestoreCmd(g *globals) *cobra.Command {
	return &cobra.Command{Use: "restore STACK VOLUME [SNAPSHOT]", Short: "Put a snapshot (default: the newest good one) back into the volume", Args: args(cobra.RangeArgs(2, 3)),
		RunE: func(cmd *cobra.Command, a []string) error {
			var id int64
			if len(a) == 3 {
				var err error
				if id, err = strconv.ParseInt(a[2], 10, 64); err != nil {
					return usageError{fmt.Errorf("snapshot %q: want the ID that backup list shows", a[2])}
				}
			}
			return withClient(g, cmd, func(ctx context.Context, c *api.Client) error {
				if err := c.BackupRestore(ctx, a[0], a[1], id); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), "restored")
				return nil
			})
		}}
}

func second(a []string) string {
	if len(a) > 1 {
		return a[1]
	}
	return ""
}
