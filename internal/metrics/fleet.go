package metrics

import (
	"context"
	"time"

	"github.com/gitopsd/gitopsd/internal/metrics/prometheus"
	"github.com/gitopsd/gitopsd/internal/store"
)

// The fleet view's metrics (docs/fleet.md, "The fleet view"). None of the
// per-stack metrics carries the host: a fleet's Prometheus tells hosts
// apart by their target (job, instance), and gitopsd_host_info names the
// host behind each target, so `gitopsd fleet status` joins every other
// series to its host on (job, instance). The host name is not added to
// the other metrics as a label: federation and relabelling keep job and
// instance, and one series per host is the only cost.
var (
	hostInfoDesc = prometheus.NewDesc("gitopsd_host_info",
		"Always 1: the name (host.name) of the gitopsd host behind this target, to join the other metrics on job and instance.",
		[]string{"host"}, nil)
	lastOutcomeDesc = prometheus.NewDesc("gitopsd_stack_last_outcome_info",
		"Always 1, one series per stack: the outcome of its last deployment (succeeded, failed, rolled_back, ...), as history shows it.",
		[]string{"stack", "outcome"}, nil)
)

// outcomes is what the last-outcome metric reads at each scrape, for the
// stacks with a row; *store.Store has it (a State without it, in unit
// tests, exports no outcome).
type outcomes interface {
	Stacks(ctx context.Context) ([]store.StackState, error)
	LastDeployment(ctx context.Context, stack string) (store.Deployment, bool, error)
}

// SetHost names this host in gitopsd_host_info; called once at start.
func (m *Metrics) SetHost(name string) {
	m.reg.MustRegister(hostInfo(name))
}

type hostInfo string

func (h hostInfo) Describe(ch chan<- *prometheus.Desc) { ch <- hostInfoDesc }

func (h hostInfo) Collect(ch chan<- prometheus.Metric) {
	ch <- prometheus.MustNewConstMetric(hostInfoDesc, prometheus.GaugeValue, 1, string(h))
}

// outcomeCollector is gitopsd_stack_last_outcome_info, read from the
// record at each scrape so that it survives restarts and agrees with
// history.
type outcomeCollector struct{ state outcomes }

func (c outcomeCollector) Describe(ch chan<- *prometheus.Desc) { ch <- lastOutcomeDesc }

func (c outcomeCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stacks, err := c.state.Stacks(ctx)
	if err != nil {
		ch <- prometheus.NewInvalidMetric(lastOutcomeDesc, err)
		return
	}
	for _, s := range stacks {
		name := s.Name
		dep, ok, err := c.state.LastDeployment(ctx, name)
		if err != nil {
			ch <- prometheus.NewInvalidMetric(lastOutcomeDesc, err)
			return
		}
		if ok && dep.Outcome != "" {
			ch <- prometheus.MustNewConstMetric(lastOutcomeDesc, prometheus.GaugeValue, 1, name, dep.Outcome)
		}
	}
}
