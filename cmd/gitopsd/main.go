// Command gitopsd is the GitOps daemon (`gitopsd run`) and the operator's
// commands that talk to it over its local socket. Commands here parse flags
// and print; the work happens in internal/.
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/gitopsd/gitopsd/internal/api"
	"github.com/gitopsd/gitopsd/internal/secrets"
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
	// A config error or a failed fetch may quote a URL with its token.
	fmt.Fprintln(os.Stderr, "gitopsd:", secrets.RedactURLs(err.Error()))
	var ue usageError
	if errors.As(err, &ue) || isUsage(err) {
		os.Exit(2)
	}
	os.Exit(1)
}

// isUsage recognises the usage errors cobra makes itself (an unknown
// command, a flag it could not parse before ours were known): exit 2, as
// for ours.
func isUsage(err error) bool {
	msg := err.Error()
	return strings.HasPrefix(msg, "unknown command ") || strings.HasPrefix(msg, "unknown flag") || strings.HasPrefix(msg, "unknown shorthand flag")
}

// globals are the flags every command shares.
type globals struct {
	config string
	socket string
}

func newRoot() *cobra.Command {
	g := &globals{}
	root := &cobra.Command{
		Use:   "gitopsd",
		Short: "GitOps reconciliation for Docker Compose stacks on one host",
		Long: `gitopsd keeps the Docker Compose stacks of this host as a Git repository says: it polls
the repository (stacks/<stack>/compose.yaml), deploys what changed with health-gated rolling
updates, rolls back a revision that fails its health gate, heals drift, snapshots and
restore-tests volumes, and records everything in SQLite.

gitopsd run is the daemon (systemd starts it). The other commands talk to it over its
local socket (--socket, or the socket of the config that run uses), except validate,
which checks a repository offline.

Exit status: 0 ok, 1 failure, 2 usage (an unknown command or flag, a wrong argument).`,
		Example: `  gitopsd status
  gitopsd diff web
  gitopsd sync --wait
  gitopsd rollback web --wait
  gitopsd validate ./fleet-repo`,
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.PersistentFlags().StringVar(&g.config, "config", "", "config file (default $GITOPSD_CONFIG or /etc/gitopsd/gitopsd.yaml)")
	root.PersistentFlags().StringVar(&g.socket, "socket", "", "daemon socket (default: the config's socket)")
	root.SetFlagErrorFunc(func(_ *cobra.Command, err error) error { return usageError{err} })
	root.AddCommand(
		newRunCmd(g), newStatusCmd(g), newDiffCmd(g), newSyncCmd(g), newHistoryCmd(g), newDriftCmd(g), newBackupCmd(g),
		newRollbackCmd(g), newUnpinCmd(g), newStateCmd(g),
		newValidateCmd(), newVersionCmd(g), newFleetCmd(g),
	)
	for _, c := range packagerCmds {
		root.AddCommand(c())
	}
	return root
}

// packagerCmds are the commands only a packaging build carries: `gitopsd
// man` (man.go, -tags man) links cobra's man page generator and Go's parser,
// half a megabyte that no daemon needs (make package builds it for itself).
var packagerCmds []func() *cobra.Command

// longOrShort is a command's description: Long, or Short when it has none.
func longOrShort(c *cobra.Command) string {
	if c.Long != "" {
		return c.Long
	}
	return c.Short
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

// group makes cmd a command that only holds subcommands: an unknown one
// is a usage error (exit 2) with suggestions, as at the top level.
func group(cmd *cobra.Command) *cobra.Command {
	cmd.SuggestionsMinimumDistance = 2
	cmd.Args = func(c *cobra.Command, a []string) error {
		if len(a) == 0 {
			return nil
		}
		msg := fmt.Sprintf("unknown command %q for %q", a[0], c.CommandPath())
		if s := c.SuggestionsFor(a[0]); len(s) > 0 {
			msg += "; did you mean " + strings.Join(s, ", ") + "?"
		}
		return usageError{errors.New(msg)}
	}
	cmd.RunE = func(c *cobra.Command, _ []string) error { return c.Help() }
	return cmd
}

func newVersionCmd(g *globals) *cobra.Command {
	var asJSON bool
	cmd := &cobra.Command{
		Use:   "version",
		Short: "Print the version of this client and of the running daemon",
		Long: `Print the version of this gitopsd binary and, when the daemon answers on its socket, the
daemon's (they differ after an upgrade until the daemon restarts). A daemon that does not
answer is reported, not an error: the exit status is 0 either way.`,
		Example: `  gitopsd version
  gitopsd version --json`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			info := api.VersionInfo{Client: version}
			c, err := newClient(g)
			if err == nil {
				ctx, cancel := context.WithTimeout(cmd.Context(), 5*time.Second)
				info.Daemon, err = c.Version(ctx)
				cancel()
			}
			if err != nil {
				info.DaemonError = err.Error()
			}
			w := cmd.OutOrStdout()
			if asJSON {
				return writeJSON(w, info)
			}
			fmt.Fprintln(w, "gitopsd", info.Client) // as it always printed: scripts read this line
			switch {
			case api.IsUnreachable(err):
				fmt.Fprintln(w, "daemon: not reachable:", info.DaemonError)
			case err != nil:
				fmt.Fprintln(w, "daemon: unknown:", info.DaemonError)
			default:
				fmt.Fprintln(w, "daemon:", info.Daemon)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&asJSON, "json", false, `print {"client", "daemon", "daemon_error"}`)
	return cmd
}
