package main

import (
	"fmt"
	"log/slog"
	"os"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gitopsd/gitopsd/internal/stack"
)

func newValidateCmd() *cobra.Command {
	var hostName string
	var labels []string
	cmd := &cobra.Command{
		Use:   "validate [DIR]",
		Short: "Check a desired-state repository offline (exit 1 if any stack is invalid)",
		Args:  args(cobra.MaximumNArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			dir := first(a)
			if dir == "" {
				dir = "."
			}
			if _, err := os.Stat(dir); err != nil {
				return usageError{fmt.Errorf("validate: %w", err)}
			}
			host := stack.Host{Name: hostName, Labels: map[string]string{}}
			if host.Name == "" {
				h, _ := os.Hostname()
				host.Name = strings.ToLower(h)
			}
			for _, l := range labels {
				k, v, ok := strings.Cut(l, "=")
				if !ok {
					return usageError{fmt.Errorf("--label %q: want KEY=VALUE", l)}
				}
				host.Labels[k] = v
			}
			routeComposeLogs(slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), nil)))
			res := stack.LoadAll(cmd.Context(), dir, host)
			if res.Err != nil {
				return fmt.Errorf("validate %s: %w", dir, res.Err)
			}
			w := cmd.OutOrStdout()
			for _, st := range res.Stacks {
				fmt.Fprintf(w, "ok       %s (%d services)\n", st.Name, len(st.Project.Services))
			}
			for _, name := range res.Untargeted {
				fmt.Fprintf(w, "ok       %s (not for host %s)\n", name, host.Name)
			}
			for _, name := range sortedNames(res.Invalid) {
				fmt.Fprintf(w, "invalid  %s: %v\n", name, res.Invalid[name])
			}
			if len(res.Invalid) > 0 {
				return exitError{code: 1}
			}
			if len(res.Stacks)+len(res.Untargeted) == 0 {
				fmt.Fprintf(cmd.ErrOrStderr(), "no stacks found under %s/stacks\n", dir)
				return exitError{code: 1}
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&hostName, "host", "", "host name to judge targets and interpolation for (default: this host)")
	cmd.Flags().StringArrayVar(&labels, "label", nil, "host label KEY=VALUE (repeatable)")
	return cmd
}

func sortedNames(m map[string]error) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
