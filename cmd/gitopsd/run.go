package main

import (
	"context"
	"os"
	"os/signal"
	"syscall"

	sdnotify "github.com/coreos/go-systemd/v22/daemon"
	"github.com/spf13/cobra"

	"github.com/gitopsd/gitopsd/internal/api"
	"github.com/gitopsd/gitopsd/internal/config"
	"github.com/gitopsd/gitopsd/internal/daemon"
	"github.com/gitopsd/gitopsd/internal/metrics"
)

func newRunCmd(g *globals) *cobra.Command {
	var lo logOptions
	cmd := &cobra.Command{
		Use:   "run",
		Short: "Run the daemon (systemd's ExecStart)",
		Long: `Run the daemon in the foreground until SIGTERM or SIGINT: fetch the source every
source.interval (and on a webhook or a local push), converge this host's stacks, heal drift,
take and test snapshots, and serve the local API (socket), the metrics and the webhook.
Stacks keep running when it stops. The configuration is read from --config,
$GITOPSD_CONFIG or /etc/gitopsd/gitopsd.yaml; a bad one stops it with one line naming the key.

Logs go to stderr: JSON by default; under systemd (JOURNAL_STREAM set) text lines prefixed
with their syslog priority, so journalctl -p err shows the errors. Durations are logged in
seconds (keys ending in _s); credentials in URLs are redacted.`,
		Example: `  gitopsd run --config /etc/gitopsd/gitopsd.yaml
  gitopsd run --log-level debug --log-format text
  journalctl -u gitopsd -p err`,
		Args: args(cobra.NoArgs),
		RunE: func(cmd *cobra.Command, _ []string) error {
			log, err := newLogger(os.Stderr, lo)
			if err != nil {
				return err
			}
			cfg, err := loadConfig(g)
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
			defer stop()
			metrics.Version = version
			d, err := daemon.New(ctx, cfg, log)
			if err != nil {
				return err
			}
			defer d.Close()
			routeComposeLogs(d.Log()) // redacted, as stacks are loaded from here on
			// WATCHDOG_USEC (systemd's WatchdogSec=): ping at half the period.
			watchdog, _ := sdnotify.SdWatchdogEnabled(false)
			d.SetNotifier(func(state string) { _, _ = sdnotify.SdNotify(false, state) }, watchdog/2)
			return d.Run(ctx, nil)
		},
	}
	cmd.Flags().StringVar(&lo.level, "log-level", "info", "least important level logged: debug, info, warn or error")
	cmd.Flags().StringVar(&lo.format, "log-format", "", "json or text (default: text with journald priorities under systemd, else json)")
	return cmd
}

// loadConfig finds the config as `run` does: --config, $GITOPSD_CONFIG, or
// the default path (which may be absent: then defaults and env apply).
func loadConfig(g *globals) (*config.Config, error) {
	path, explicit := g.config, g.config != ""
	if !explicit {
		if env := os.Getenv("GITOPSD_CONFIG"); env != "" {
			path, explicit = env, true
		} else {
			path = config.DefaultPath
		}
	}
	return config.LoadOrDefault(path, explicit)
}

// newClient returns the API client for the daemon the flags point at:
// --socket, else the socket of the config `run` would use.
func newClient(g *globals) (*api.Client, error) {
	if g.socket != "" {
		return api.NewClient(g.socket), nil
	}
	cfg, err := loadConfig(g)
	if err != nil {
		if g.config != "" || os.Getenv("GITOPSD_CONFIG") != "" {
			return nil, err
		}
		// No config named: a client needs only the socket, so a config that
		// would not start a daemon (no source.url) still finds the default one.
		cfg = config.Default()
		if env := os.Getenv("GITOPSD_SOCKET"); env != "" {
			cfg.Socket = env
		}
	}
	return api.NewClient(cfg.Socket), nil
}

func withSignals(ctx context.Context) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
}
