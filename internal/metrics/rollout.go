package metrics

import (
	"context"
	"sync"
	"time"

	"github.com/gitopsd/gitopsd/internal/fleet"
	"github.com/gitopsd/gitopsd/internal/metrics/prometheus"
)

// The rollout's metrics (docs/fleet.md): what the gate of a later wave on
// another host reads through Prometheus (internal/fleet), and what
// `gitopsd fleet status` shows. Each carries this host's own name (host),
// so a reader needs no relabeling to say which host did what; revision
// is one value per stack at a time, so the label sets stay bounded.
// Named where the gate and the fleet view read them (internal/fleet).
const (
	RolloutInfoName  = fleet.MetricRolloutInfo
	HealthySinceName = fleet.MetricHealthySince
	RolledBackName   = fleet.MetricRolledBack
	HeldName         = fleet.MetricHeld
)

var (
	rolloutInfoDesc = prometheus.NewDesc(RolloutInfoName,
		"Always 1, one series per stack that targets this host: the rollout wave the host is in for it (\"\" without a rollout).",
		[]string{"stack", "wave", "host"}, nil)
	healthySinceDesc = prometheus.NewDesc(HealthySinceName,
		"Since when (Unix time) the stack has run revision Synced and Healthy on this host; absent while it does not.",
		[]string{"stack", "revision", "wave", "host"}, nil)
	rolledBackDesc = prometheus.NewDesc(RolledBackName,
		"1 while this host holds revision of the stack as rolled back (or failed to start); a later wave's gate halts on it.",
		[]string{"stack", "revision", "wave", "host"}, nil)
	heldDesc = prometheus.NewDesc(HeldName,
		"1 while the rollout holds revision of the stack on this host; verdict is wait, halted or gate_error.",
		[]string{"stack", "revision", "wave", "host", "verdict"}, nil)
)

// RolloutStack is what the rollout metrics say of one stack that targets
// this host. Empty fields leave their series out.
type RolloutStack struct {
	Stack, Wave string
	// HealthyRevision runs Synced and Healthy since HealthySince.
	HealthyRevision string
	HealthySince    time.Time
	// RolledBack is the revision the host holds as rolled back.
	RolledBack string
	// HeldRevision is held by the rollout, with HeldVerdict.
	HeldRevision, HeldVerdict string
}

// Rollouts reads the rollout state of the stacks that target this host,
// at each scrape.
type Rollouts func(ctx context.Context) ([]RolloutStack, error)

// rolloutCollector exposes the rollout metrics of host.
type rolloutCollector struct {
	mu   sync.Mutex
	host string
	read Rollouts
}

// SetRollouts makes the rollout metrics read read at each scrape, for the
// host named host. Until it is called they are absent.
func (m *Metrics) SetRollouts(host string, read Rollouts) {
	m.rollouts.mu.Lock()
	defer m.rollouts.mu.Unlock()
	m.rollouts.host, m.rollouts.read = host, read
}

func (c *rolloutCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- rolloutInfoDesc
	ch <- healthySinceDesc
	ch <- rolledBackDesc
	ch <- heldDesc
}

func (c *rolloutCollector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	host, read := c.host, c.read
	c.mu.Unlock()
	if read == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	stacks, err := read(ctx)
	if err != nil {
		// Absent rather than stale: a gate must not count a host whose
		// record it cannot read.
		ch <- prometheus.NewInvalidMetric(rolloutInfoDesc, err)
		return
	}
	for _, s := range stacks {
		ch <- prometheus.MustNewConstMetric(rolloutInfoDesc, prometheus.GaugeValue, 1, s.Stack, s.Wave, host)
		if s.HealthyRevision != "" {
			ch <- prometheus.MustNewConstMetric(healthySinceDesc, prometheus.GaugeValue,
				float64(s.HealthySince.UnixNano())/1e9, s.Stack, s.HealthyRevision, s.Wave, host)
		}
		if s.RolledBack != "" {
			ch <- prometheus.MustNewConstMetric(rolledBackDesc, prometheus.GaugeValue, 1, s.Stack, s.RolledBack, s.Wave, host)
		}
		if s.HeldRevision != "" {
			ch <- prometheus.MustNewConstMetric(heldDesc, prometheus.GaugeValue, 1, s.Stack, s.HeldRevision, s.Wave, host, s.HeldVerdict)
		}
	}
}
