package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"os"
	"strconv"
	"strings"
	"syscall"
	"text/tabwriter"
	"unsafe"

	"github.com/spf13/cobra"

	"github.com/gitopsd/gitopsd/internal/api"
)

func newBackupCmd(g *globals) *cobra.Command {
	cmd := group(&cobra.Command{Use: "backup", Short: "Volume snapshots: list, run, test, restore",
		Long: `Snapshots of the volumes a stack backs up (x-gitopsd.backup in its compose file): list
them, take one now, restore-test one, or put one back. Snapshots are zstd-compressed tar
archives under state_dir/snapshots, readable without gitopsd.`,
		Example: `  gitopsd backup list web
  gitopsd backup run web data --wait
  gitopsd backup test web data --level 2
  gitopsd backup restore web data`})
	cmd.AddCommand(newBackupListCmd(g), newBackupRunCmd(g), newBackupTestCmd(g), newBackupRestoreCmd(g))
	return cmd
}

func newBackupListCmd(g *globals) *cobra.Command {
	var fromRemote, allHosts, asJSON bool
	cmd := queryCommand(g, &cobra.Command{Use: "list [STACK]", Short: "List snapshots, newest first (--remote: the copies on backup.remote)",
		Long: `List snapshots of every stack (or STACK), newest first: id, stack, volume, when it was
taken, status (ok, failed, running, deleted by retention), size, files, and how its last
restore test went. The id is what backup restore takes.

With --remote, list the copies on backup.remote instead: host, stack, volume, the copy's id
(its folder there), when the snapshot was taken, its size, its state (committed: marker,
manifest and size check out; partial: an upload under way or cut short; damaged) and the
last restore test of it run here (backup test --remote). Only this host's copies are listed
unless --all-hosts.

A STACK the daemon does not know is an error (exit 1) naming the nearest known stacks.`,
		Example: `  gitopsd backup list
  gitopsd backup list web --json | jq '.[] | select(.status == "ok") | .id'
  gitopsd backup list --remote
  gitopsd backup list web --remote --all-hosts --json`},
		func(ctx context.Context, c *api.Client, stack string) ([]api.Snapshot, error) {
			return c.Snapshots(ctx, stack)
		},
		printSnapshots)
	local := cmd.RunE
	cmd.RunE = func(cmd *cobra.Command, a []string) error {
		if allHosts && !fromRemote {
			return usageError{fmt.Errorf("--all-hosts goes with --remote")}
		}
		if !fromRemote {
			return local(cmd, a)
		}
		asJSON, _ = cmd.Flags().GetBool("json")
		return withClient(g, cmd, func(ctx context.Context, c *api.Client) error {
			ss, err := c.RemoteSnapshots(ctx, first(a), allHosts)
			if err != nil {
				return err
			}
			if asJSON {
				return writeJSON(cmd.OutOrStdout(), ss)
			}
			return printRemoteSnapshots(cmd.OutOrStdout(), ss)
		})
	}
	cmd.Flags().BoolVar(&fromRemote, "remote", false, "list the copies on backup.remote (JSON: host, stack, volume, id, created_at, size_bytes, state, test fields)")
	cmd.Flags().BoolVar(&allHosts, "all-hosts", false, "with --remote: every host's copies, not only this host's")
	return cmd
}

func printRemoteSnapshots(w io.Writer, ss []api.RemoteSnapshot) error {
	if len(ss) == 0 {
		_, err := fmt.Fprintln(w, "no copies on the remote")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tSTACK\tVOLUME\tID\tCREATED\tSIZE\tSTATE\tTESTED\tPROBLEM")
	for _, s := range ss {
		tested := testedCell(s.TestedAt, s.LastTestOK, s.LastTestLevel)
		msg := s.Problem
		if msg == "" {
			msg = s.LastTestError
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", s.Host, s.Stack, s.Volume, s.ID, dash(s.CreatedAt), s.SizeBytes, s.State, tested, dash(flat(msg)))
	}
	return tw.Flush()
}

func printSnapshots(w io.Writer, ss []api.Snapshot) error {
	if len(ss) == 0 {
		_, err := fmt.Fprintln(w, "no snapshots")
		return err
	}
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tSTACK\tVOLUME\tCREATED\tSTATUS\tSIZE\tFILES\tTESTED\tERROR")
	for _, s := range ss {
		tested := testedCell(s.TestedAt, s.LastTestOK, s.LastTestLevel)
		msg := s.Error
		if msg == "" {
			msg = s.LastTestError
		}
		fmt.Fprintf(tw, "%d\t%s\t%s\t%s\t%s\t%d\t%d\t%s\t%s\n", s.ID, s.Stack, s.Volume, s.CreatedAt, s.Status, s.SizeBytes, s.Files, tested, dash(flat(msg)))
	}
	return tw.Flush()
}

// testedCell is the TESTED column: how the last restore test went.
func testedCell(at string, ok bool, level int) string {
	switch {
	case at != "" && ok:
		return fmt.Sprintf("ok (level %d) %s", level, at)
	case at != "":
		return fmt.Sprintf("FAILED (level %d) %s", level, at)
	}
	return "-"
}

func newBackupRunCmd(g *globals) *cobra.Command {
	return actionCommand(g, &cobra.Command{Use: "run STACK [VOLUME]", Short: "Snapshot a stack's volume (every one it backs up by default) now", Args: args(cobra.RangeArgs(1, 2)),
		Long: `Take a snapshot of VOLUME of STACK now (of every volume the stack backs up, without
VOLUME), as its schedule would: the services listed in its backup's stop: are stopped
while it is taken. Without --wait the snapshot is queued.

An unknown STACK is an error (exit 1) naming the nearest known stacks.`,
		Example: `  gitopsd backup run web --wait
  gitopsd backup run web data`,
		ValidArgsFunction: completeStacks(g, 1)},
		"snapshot taken", "snapshot queued",
		func(ctx context.Context, c *api.Client, a []string, wait bool) error {
			return c.BackupRun(ctx, a[0], second(a), wait)
		})
}

// BackupTestResult is `backup test --json`.
type BackupTestResult struct {
	Stack  string `json:"stack"`
	Volume string `json:"volume"` // "" when every volume the stack backs up was tested
	Level  int    `json:"level"`  // as asked; 0: each volume's own
	OK     bool   `json:"ok"`
	Error  string `json:"error"`
	Remote bool   `json:"remote"` // the newest copy on backup.remote was tested
}

func newBackupTestCmd(g *globals) *cobra.Command {
	var level int
	var asJSON, fromRemote bool
	cmd := &cobra.Command{Use: "test STACK [VOLUME]", Short: "Restore-test the newest good snapshot now; exit 1 if it fails", Args: args(cobra.RangeArgs(1, 2)),
		Long: `Restore-test the newest good snapshot of VOLUME of STACK (of every volume it backs up,
without VOLUME) now. Level 1 checks the archive against its recorded hashes; level 2 also
restores it into a scratch volume and compares; level 3 also runs the volume's verify
command against the restored copy. The result is recorded (backup list shows it).

With --remote the newest copy on backup.remote is downloaded (into state_dir/remote/tmp,
checked against its manifest on the way) and tested instead: the test that proves the
backup outlives the host (backup list --remote shows the result).

Exit status: 0 the test passed, 1 it failed (the error says why) or STACK is unknown.`,
		Example: `  gitopsd backup test web
  gitopsd backup test web data --level 3
  gitopsd backup test web --json
  gitopsd backup test web data --remote --level 3`,
		ValidArgsFunction: completeStacks(g, 1),
		RunE: func(cmd *cobra.Command, a []string) error {
			if level < 0 || level > 3 {
				return usageError{fmt.Errorf("--level must be 1, 2 or 3")}
			}
			return withClient(g, cmd, func(ctx context.Context, c *api.Client) error {
				test := c.BackupTest
				if fromRemote {
					test = c.BackupTestRemote
				}
				err := test(ctx, a[0], second(a), level)
				if asJSON && !api.IsUnreachable(err) {
					res := BackupTestResult{Stack: a[0], Volume: second(a), Level: level, OK: err == nil, Remote: fromRemote}
					if err != nil {
						res.Error = err.Error()
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
				fmt.Fprintln(cmd.OutOrStdout(), "restore test passed")
				return nil
			})
		}}
	cmd.Flags().IntVar(&level, "level", 0, "1: hashes; 2: restore into a scratch volume and compare; 3: also run verify (default: the volume's own)")
	cmd.Flags().BoolVar(&asJSON, "json", false, "print the result as JSON: {stack, volume, level, ok, error, remote}")
	cmd.Flags().BoolVar(&fromRemote, "remote", false, "test the newest copy on backup.remote, downloaded, instead of the local snapshot")
	return cmd
}

func newBackupRestoreCmd(g *globals) *cobra.Command {
	var yes bool
	var fromHost string
	cmd := &cobra.Command{Use: "restore STACK VOLUME [SNAPSHOT]", Short: "Put a snapshot (default: the newest good one) back into the volume", Args: args(cobra.RangeArgs(2, 3)),
		Long: `Put SNAPSHOT (an id from backup list; default: the newest good one) back into VOLUME of
STACK, replacing what the volume holds. The snapshot is verified before anything is
touched; the services using the volume are stopped while it is put back, and started after.

With --from-host OLD, the newest good copy that host OLD left on the remote
(backup.remote, under OLD/STACK/VOLUME) is downloaded, recorded as a snapshot of this host,
verified and put back the same way: how a stack's data moves from a dead host to this one.

On a terminal, restore asks for confirmation unless --yes. When stdin is not a terminal
(a script, a pipe) it refuses to run without --yes (exit 2): a restore replaces data.`,
		Example: `  gitopsd backup restore web data
  gitopsd backup restore web data 42 --yes
  gitopsd backup restore shop db --from-host edge-7 --yes`,
		ValidArgsFunction: completeStacks(g, 1),
		RunE: func(cmd *cobra.Command, a []string) error {
			var id int64
			if len(a) == 3 {
				if fromHost != "" {
					return usageError{fmt.Errorf("--from-host takes the newest good remote copy: no SNAPSHOT with it")}
				}
				var err error
				if id, err = strconv.ParseInt(a[2], 10, 64); err != nil {
					return usageError{fmt.Errorf("snapshot %q: want the ID that backup list shows", a[2])}
				}
			}
			if !yes {
				what := "the newest good snapshot"
				switch {
				case fromHost != "":
					what = "the newest good remote copy of host " + fromHost
				case id != 0:
					what = "snapshot " + a[2]
				}
				question := fmt.Sprintf("Put %s back into volume %s of stack %s? What the volume holds now is replaced.", what, a[1], a[0])
				ok, err := confirm(cmd, question)
				if err != nil {
					return err
				}
				if !ok {
					fmt.Fprintln(cmd.ErrOrStderr(), "not restored")
					return exitError{code: 1}
				}
			}
			return withClient(g, cmd, func(ctx context.Context, c *api.Client) error {
				if err := c.BackupRestore(ctx, a[0], a[1], id, fromHost); err != nil {
					return err
				}
				fmt.Fprintln(cmd.OutOrStdout(), "restored")
				return nil
			})
		}}
	cmd.Flags().BoolVarP(&yes, "yes", "y", false, "do not ask for confirmation (needed when stdin is not a terminal)")
	cmd.Flags().StringVar(&fromHost, "from-host", "", "restore the newest good remote copy that this host name (a dead host's) left")
	return cmd
}

// confirm asks question on the terminal and reads y/yes. Without a
// terminal on stdin it is a usage error: nobody can answer.
func confirm(cmd *cobra.Command, question string) (bool, error) {
	if !isTerminal(os.Stdin) {
		return false, usageError{fmt.Errorf("%s stdin is not a terminal, so nobody can confirm: pass --yes", question)}
	}
	fmt.Fprint(cmd.ErrOrStderr(), question+" [y/N] ")
	line, _ := bufio.NewReader(os.Stdin).ReadString('\n')
	switch strings.ToLower(strings.TrimSpace(line)) {
	case "y", "yes":
		return true, nil
	}
	return false, nil
}

// isTerminal says whether f is a terminal (it answers TCGETS; /dev/null,
// a character device too, does not).
func isTerminal(f *os.File) bool {
	var t syscall.Termios
	_, _, errno := syscall.Syscall(syscall.SYS_IOCTL, f.Fd(), syscall.TCGETS, uintptr(unsafe.Pointer(&t)))
	return errno == 0
}

func second(a []string) string {
	if len(a) > 1 {
		return a[1]
	}
	return ""
}
