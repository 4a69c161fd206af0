package main

import (
	"fmt"
	"log/slog"
	"os"
	"slices"
	"sort"
	"strings"

	"github.com/spf13/cobra"

	"github.com/gitopsd/gitopsd/internal/backup"
	"github.com/gitopsd/gitopsd/internal/policy"
	"github.com/gitopsd/gitopsd/internal/secrets"
	"github.com/gitopsd/gitopsd/internal/stack"
)

func newValidateCmd() *cobra.Command {
	var hostName, ageKeyFile string
	var labels []string
	var strict bool
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
			host := stack.Host{Name: hostName, Labels: map[string]string{}, SkipSecrets: ageKeyFile == ""}
			if ageKeyFile != "" {
				ids, err := secrets.LoadIdentities(ageKeyFile)
				if err != nil {
					return usageError{fmt.Errorf("--age-key-file: %w", err)}
				}
				host.Identities = ids
			}
			if strict {
				rules := policy.Strict()
				host.Policy = &rules
			}
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
			res.Stacks = slices.DeleteFunc(res.Stacks, func(st *stack.Stack) bool {
				if err := backup.Validate(st); err != nil {
					res.Invalid[st.Name] = err
					return true
				}
				return false
			})
			for _, st := range res.Stacks {
				fmt.Fprintf(w, "ok       %s (%s)\n", st.Name, describe(st))
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
	cmd.Flags().StringVar(&ageKeyFile, "age-key-file", "", "age identities to decrypt SOPS-encrypted env files with (default: leave them out, unchecked)")
	cmd.Flags().BoolVar(&strict, "strict", false, "judge stacks by the strict host policy")
	return cmd
}

// describe says what of a valid stack would deploy: its services and the
// profiles that chose them.
func describe(st *stack.Stack) string {
	s := fmt.Sprintf("%d services", len(st.Project.Services))
	if len(st.Profiles) > 0 {
		s += ", profiles " + strings.Join(st.Profiles, ", ")
	}
	return s
}

func sortedNames(m map[string]error) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
