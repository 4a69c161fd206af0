// Command gitopsd is the GitOps daemon (`gitopsd run`) and the operator's
// commands that talk to it over its local socket. Commands here parse flags
// and print; the work happens in internal/.
package main

import (
	"errors"
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

// version is set at build time: -ldflags "-X main.version=...".
var version = "dev"

// usageError marks a command line the user must correct (exit 2).
type usageError struct{ error }

// exitError carries an exit code after the command has printed its result.
type exitError struct{ code int }

func (e exitError) Error() string { return fmt.Sprintf("exit %d", e.code) }

func main() {
	root := newRoot()
	err := root.Execute()
	if err == nil {
		return
	}
	var ee exitError
	if errors.As(err, &ee) {
		os.Exit(ee.code)
	}
	fmt.Fprintln(os.Stderr, "gitopsd:", err)
	var ue usageError
	if errors.As(err, &ue) {
		os.Exit(2)
	}
	os.Exit(1)
}

// globals are the flags every command shares.
type globals struct {
	config string
	socket string
}

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:           "gitopsd",
		Short:         "GitOps reconciliation for Docker Compose stacks on one host",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.config, "config", "", "config file (default $GITOPSD_CONFIG or /etc/gitopsd/gitopsd.yaml)")
	root.PersistentFlags().StringVar(&g.socket, "socket", "", "daemon socket (default: the config's socket)")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(
		newRunCmd(g), newStatusCmd(g), newDiffCmd(g), newSyncCmd(g), newHistoryCmd(g), newDriftCmd(g), newBackupCmd(g),
		newRollbackCmd(g), newUnpinCmd(g), newStateCmd(g),
		newValidateCmd(), newVersionCmd(), newManCmd(),
	)
	return root
}

// args wraps a cobra argument check so a wrong count is a usage error.
func args(check cobra.PositionalArgs) cobra.PositionalArgs {
	return func(cmd *cobra.Command, a []string) error {
		if err := check(cmd, a); err != nil {
			return usageError{err}
		}
		return nil
	}
}

func newVersionCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "version",
		Short: "Print the version",
		Args:  args(cobra.NoArgs),
		Run: func(cmd *cobra.Command, _ []string) {
			fmt.Fprintln(cmd.OutOrStdout(), "gitopsd", version)
		},
	}
}
