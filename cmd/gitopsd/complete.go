package main

import (
	"context"
	"time"

	"github.com/spf13/cobra"
)

// completeStacks completes the first n arguments with the stack names the
// daemon knows. A daemon that does not answer (not running, no access)
// completes nothing, quietly: a shell prompt is no place for an error.
func completeStacks(g *globals, n int) cobra.CompletionFunc {
	return func(cmd *cobra.Command, a []string, _ string) ([]cobra.Completion, cobra.ShellCompDirective) {
		if len(a) >= n {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		c, err := newClient(g)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		ctx, cancel := context.WithTimeout(cmd.Context(), 2*time.Second)
		defer cancel()
		names, err := c.StackNames(ctx)
		if err != nil {
			return nil, cobra.ShellCompDirectiveNoFileComp
		}
		return names, cobra.ShellCompDirectiveNoFileComp
	}
}
