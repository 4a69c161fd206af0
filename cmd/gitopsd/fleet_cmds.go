package main

import (
	"context"
	"errors"
	"os"
	"time"

	"github.com/spf13/cobra"

	"github.com/gitopsd/gitopsd/internal/fleet"
)

// fleetFlags are what both fleet commands read Prometheus with.
type fleetFlags struct {
	prometheus string
	timeout    time.Duration
	asJSON     bool
}

func newFleetCmd(g *globals) *cobra.Command {
	cmd := group(&cobra.Command{
		Use:   "fleet",
		Short: "Show the fleet as its Prometheus sees it",
		Long: `Show every host of the fleet, or one revision's rollout, from the Prometheus that scrapes
the fleet's gitopsd. These commands read Prometheus only (--prometheus URL, else fleet.prometheus
of the config); they need no daemon on this host.`,
		Example: `  gitopsd fleet status --prometheus http://prometheus:9090
  gitopsd fleet rollout web`,
	})
	cmd.AddCommand(newFleetStatusCmd(g), newFleetRolloutCmd(g))
	return cmd
}

func (f *fleetFlags) add(cmd *cobra.Command) {
	cmd.Flags().StringVar(&f.prometheus, "prometheus", "", "Prometheus URL (default: fleet.prometheus of the config)")
	cmd.Flags().DurationVar(&f.timeout, "timeout", 30*time.Second, "give up on Prometheus after this long")
	cmd.Flags().BoolVar(&f.asJSON, "json", false, "print the document instead of the table")
}

// client is the Prometheus client the flags, or the config, point at.
func (f *fleetFlags) client(g *globals) (*fleet.PromClient, error) {
	url := f.prometheus
	if url == "" {
		cfg, err := loadConfig(g)
		if err != nil && (g.config != "" || os.Getenv("GITOPSD_CONFIG") != "") {
			return nil, err
		}
		if err == nil {
			url = cfg.Fleet.Prometheus
		}
	}
	if url == "" {
		return nil, usageError{errors.New("no Prometheus: pass --prometheus URL or set fleet.prometheus in the config")}
	}
	return &fleet.PromClient{URL: url, Timeout: f.timeout}, nil
}

func newFleetStatusCmd(g *globals) *cobra.Command {
	var f fleetFlags
	var lookback time.Duration
	cmd := &cobra.Command{
		Use:   "status",
		Short: "One row per host and stack: wave, revision, sync, health, drift, last outcome, snapshot age",
		Long: `Print one row per host and stack of the fleet: the host's wave for the stack, the revision it
runs, its sync status and health, its open drifts, the outcome of its last deployment and the
age of its last good snapshot (the oldest of its volumes'), and whether the rollout holds it
back from a newer revision. A host Prometheus saw within --lookback whose gitopsd does not
answer now (up is 0, or its target is gone) is listed as not reporting.

Hosts are told apart by gitopsd_host_info, joined to the other metrics on job and instance.`,
		Example: `  gitopsd fleet status --prometheus http://prometheus:9090
  gitopsd fleet status --json | jq '.rows[] | select(.sync != "Synced")'`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			c, err := f.client(g)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
			defer cancel()
			st, err := fleet.ReadStatus(ctx, c, lookback)
			if err != nil {
				return err
			}
			if f.asJSON {
				return writeJSON(cmd.OutOrStdout(), st)
			}
			return fleet.WriteStatus(cmd.OutOrStdout(), st, time.Now())
		},
	}
	f.add(cmd)
	cmd.Flags().DurationVar(&lookback, "lookback", fleet.DefaultLookback, "list hosts that stopped reporting within this long")
	return cmd
}

func newFleetRolloutCmd(g *globals) *cobra.Command {
	var f fleetFlags
	var revision string
	cmd := &cobra.Command{
		Use:   "rollout STACK",
		Short: "One revision's progress through the stack's waves",
		Long: `Print how one revision of a stack goes through its waves: per wave, the hosts that target the
stack, those running the revision Synced and Healthy (and for how long), those the rollout
holds back (waiting for the soak or the gate, halted by a rollback, or the gate unreachable),
those that rolled it back, and the others.

Without --revision, the revision is the one the rollout is on: the one held hosts wait for,
else one a host rolled back, else the newest hosts run. Waves are listed in the order the
revision reached them.`,
		Example: `  gitopsd fleet rollout web
  gitopsd fleet rollout web --revision 3f3fa508d389 --json`,
		Args: args(cobra.ExactArgs(1)),
		RunE: func(cmd *cobra.Command, a []string) error {
			c, err := f.client(g)
			if err != nil {
				return err
			}
			ctx, cancel := context.WithTimeout(cmd.Context(), f.timeout)
			defer cancel()
			v, err := fleet.ReadRollout(ctx, c, a[0], revision)
			if err != nil {
				return err
			}
			if f.asJSON {
				return writeJSON(cmd.OutOrStdout(), v)
			}
			return fleet.WriteRollout(cmd.OutOrStdout(), v, time.Now())
		},
	}
	f.add(cmd)
	cmd.Flags().StringVar(&revision, "revision", "", "the revision to follow, or a prefix of it (default: the one the rollout is on)")
	return cmd
}
