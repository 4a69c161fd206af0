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
	"github.com/gitopsd/gitopsd/internal/fleet"
	"github.com/gitopsd/gitopsd/internal/policy"
	"github.com/gitopsd/gitopsd/internal/secrets"
	"github.com/gitopsd/gitopsd/internal/stack"
)

func newValidateCmd() *cobra.Command {
	var hostName, ageKeyFile string
	var labels []string
	var strict, asJSON bool
	cmd := &cobra.Command{
		Use:   "validate [DIR]",
		Short: "Check a desired-state repository offline (exit 1 if any stack is invalid)",
		Long: `Load every stack under DIR/stacks (default: the current folder) as the daemon would for a
host, without Docker or a daemon, and say for each whether it is valid, invalid (with the
file, line and key at fault) or not for this host (its x-gitopsd.targets leave it out).
fleet.yaml at the root, if present, and each stack's x-gitopsd.rollout are checked too.
Meant for the repository's CI, so a bad commit is refused before any host sees it.

--host and --label judge targets and interpolation (GITOPSD_HOST, GITOPSD_LABEL_<KEY>)
for a given host; --strict applies the strict host policy; --age-key-file decrypts
SOPS-encrypted env files (without it they are left out, unchecked).

Exit status: 0 every stack is valid, 1 a stack is invalid or there are none, 2 usage.`,
		Example: `  gitopsd validate
  gitopsd validate ./fleet --host edge-01 --label site=berlin
  gitopsd validate . --strict --json | jq '.stacks[] | select(.status == "invalid")'`,
		Args: args(cobra.MaximumNArgs(1)),
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
			rollout, fleetErr := fleet.Load(dir)
			res.Stacks = slices.DeleteFunc(res.Stacks, func(st *stack.Stack) bool {
				if err := backup.Validate(st); err != nil {
					res.Invalid[st.Name] = err
					return true
				}
				if _, err := fleet.ForStack(st, rollout); err != nil {
					res.Invalid[st.Name] = err
					return true
				}
				return false
			})
			if asJSON {
				return validateJSON(cmd, dir, host.Name, res, fleetResult(rollout, fleetErr))
			}
			switch {
			case fleetErr != nil:
				fmt.Fprintf(w, "invalid  %s: %v\n", fleet.FileName, fleetErr)
			case rollout != nil:
				fmt.Fprintf(w, "ok       %s (%s)\n", fleet.FileName, rollout)
			}
			for _, st := range res.Stacks {
				fmt.Fprintf(w, "ok       %s (%s)\n", st.Name, describe(st))
			}
			for _, name := range res.Untargeted {
				fmt.Fprintf(w, "ok       %s (not for host %s)\n", name, host.Name)
			}
			for _, name := range sortedNames(res.Invalid) {
				fmt.Fprintf(w, "invalid  %s: %v\n", name, res.Invalid[name])
			}
			if len(res.Invalid) > 0 || fleetErr != nil {
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
	cmd.Flags().BoolVar(&asJSON, "json", false, "print {host, ok, stacks: [{name, status, services, profiles, error}]}")
	return cmd
}

// ValidateResult is `validate --json`. A stack's Status is ok, invalid
// (Error says why, naming file, line and key) or untargeted (not for this
// host). OK is false when a stack or fleet.yaml is invalid or there are no
// stacks.
type ValidateResult struct {
	Host   string          `json:"host"`
	OK     bool            `json:"ok"`
	Fleet  ValidateFleet   `json:"fleet"`
	Stacks []ValidateStack `json:"stacks"`
}

// ValidateFleet is fleet.yaml's part of ValidateResult: Status is ok,
// invalid (Error names the file, line and key) or absent.
type ValidateFleet struct {
	File   string `json:"file"`
	Status string `json:"status"`
	Error  string `json:"error"`
}

func fleetResult(r *fleet.Rollout, err error) ValidateFleet {
	switch {
	case err != nil:
		return ValidateFleet{File: fleet.FileName, Status: "invalid", Error: err.Error()}
	case r == nil:
		return ValidateFleet{File: fleet.FileName, Status: "absent"}
	}
	return ValidateFleet{File: fleet.FileName, Status: "ok"}
}

// ValidateStack is one stack of ValidateResult.
type ValidateStack struct {
	Name     string   `json:"name"`
	Status   string   `json:"status"`
	Services int      `json:"services"`
	Profiles []string `json:"profiles"`
	Error    string   `json:"error"`
}

func validateJSON(cmd *cobra.Command, dir, host string, res stack.Result, fl ValidateFleet) error {
	out := ValidateResult{Host: host, Fleet: fl, Stacks: []ValidateStack{}}
	for _, st := range res.Stacks {
		p := st.Profiles
		if p == nil {
			p = []string{}
		}
		out.Stacks = append(out.Stacks, ValidateStack{Name: st.Name, Status: "ok", Services: len(st.Project.Services), Profiles: p})
	}
	for _, name := range res.Untargeted {
		out.Stacks = append(out.Stacks, ValidateStack{Name: name, Status: "untargeted", Profiles: []string{}})
	}
	for _, name := range sortedNames(res.Invalid) {
		out.Stacks = append(out.Stacks, ValidateStack{Name: name, Status: "invalid", Profiles: []string{}, Error: res.Invalid[name].Error()})
	}
	out.OK = len(res.Invalid) == 0 && len(out.Stacks) > 0 && fl.Status != "invalid"
	if err := writeJSON(cmd.OutOrStdout(), out); err != nil {
		return err
	}
	if !out.OK {
		if len(out.Stacks) == 0 {
			fmt.Fprintf(cmd.ErrOrStderr(), "no stacks found under %s/stacks\n", dir)
		}
		return exitError{code: 1}
	}
	return nil
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
