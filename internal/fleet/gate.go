package fleet

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// The metrics the gate reads. Each host exports them for the stacks that
// target it (internal/metrics, rollout.go; gitopsd_stack_info and
// rollbacks_total carry neither the wave nor, for rollbacks, the revision,
// and a rollout must know both):
//
//	gitopsd_rollout_info{stack,wave,host} 1
//	    this host targets the stack and is in wave (the gate's denominator)
//	gitopsd_rollout_healthy_since_timestamp_seconds{stack,revision,wave,host}
//	    since when this host has run revision Synced and Healthy; absent when not
//	gitopsd_rollout_rolled_back_info{stack,revision,wave,host} 1
//	    this host rolled revision back (kept while it holds it as failed)
//
// host is the host's own name, one value per host, so the gate can say
// which host rolled back without relying on Prometheus's instance label
// (an address, and rewritten by federation).
const (
	MetricRolloutInfo   = "gitopsd_rollout_info"
	MetricHealthySince  = "gitopsd_rollout_healthy_since_timestamp_seconds"
	MetricRolledBack    = "gitopsd_rollout_rolled_back_info"
	defaultQueryTimeout = 10 * time.Second
)

// Queries are the PromQL the gate reads for one stack and revision: three
// instant vectors, whatever the size of the fleet, asked as one query
// (One).
type Queries struct {
	Targeting    string // hosts per wave that target the stack: count by (wave)
	HealthySince string // per host running the revision healthy: since when
	RolledBack   string // hosts that rolled the revision back
}

// TargetingLookback is how long a host that stopped reporting still counts
// among its wave's hosts (healthy it does not count, so it holds the
// waves after it).
const TargetingLookback = "1h"

// QueriesFor builds the gate's queries for a stack and a revision.
func QueriesFor(stackName, revision string) Queries {
	s, r := promQuote(stackName), promQuote(revision)
	return Queries{
		// Hosts seen in the last hour, not only those that answer now: a
		// canary that went down (or whose gitopsd died) must hold the
		// next wave, not vanish from the count and let it through. A
		// host taken out of the fleet counts for that hour.
		Targeting:    fmt.Sprintf(`count by (wave) (max by (host, wave) (last_over_time(%s{stack=%s}[%s])))`, MetricRolloutInfo, s, TargetingLookback),
		HealthySince: fmt.Sprintf(`max by (host, wave) (%s{stack=%s,revision=%s})`, MetricHealthySince, s, r),
		RolledBack:   fmt.Sprintf(`max by (host, wave) (%s{stack=%s,revision=%s})`, MetricRolledBack, s, r),
	}
}

// promQuote quotes a label value for PromQL (a Go-style double-quoted string).
func promQuote(s string) string { return strconv.Quote(s) }

// One is the three queries as one, so a held stack costs Prometheus one
// request per poll: each part is tagged with a label q (targeting,
// healthy, rolled_back) that no series of ours carries, so `or` keeps
// every element of each.
func (q Queries) One() string {
	tag := func(expr, part string) string {
		return fmt.Sprintf(`label_replace(%s, "q", %q, "", "")`, expr, part)
	}
	return tag(q.Targeting, partTargeting) + " or " + tag(q.HealthySince, partHealthy) + " or " + tag(q.RolledBack, partRolledBack)
}

const (
	partTargeting  = "targeting"
	partHealthy    = "healthy"
	partRolledBack = "rolled_back"
)

// Observe asks Prometheus about a stack and a revision, in one query
// (Queries.One). An error is the Observation's Err: a partial reading
// could let a wave go on a wrong count.
func Observe(ctx context.Context, c *PromClient, stackName, revision string) Observation {
	samples, err := c.Query(ctx, QueriesFor(stackName, revision).One())
	if err != nil {
		return Observation{Err: fmt.Errorf("ask %s about revision %s of stack %s: %w", c.URL, short(revision), stackName, err)}
	}
	obs := Observation{Waves: map[string]WaveState{}}
	for _, s := range samples {
		wave := s.Labels["wave"]
		ws := obs.Waves[wave]
		switch s.Labels["q"] {
		case partTargeting:
			ws.Targeting = int(s.Value)
		case partHealthy:
			sec, frac := splitSeconds(s.Value)
			ws.HealthySince = append(ws.HealthySince, time.Unix(sec, frac).UTC())
		case partRolledBack:
			obs.RolledBack = append(obs.RolledBack, HostRef{Host: s.Labels["host"], Wave: wave})
			continue
		}
		obs.Waves[wave] = ws
	}
	return obs
}

func splitSeconds(v float64) (int64, int64) {
	sec := int64(v)
	return sec, int64((v - float64(sec)) * 1e9)
}

// PromClient asks a Prometheus server instant queries over its HTTP API
// (GET /api/v1/query).
type PromClient struct {
	URL  string // base URL, e.g. http://prometheus:9090
	HTTP *http.Client
	// Timeout bounds one query (default 10s), also sent to Prometheus as
	// its own evaluation timeout.
	Timeout time.Duration
}

// Sample is one element of an instant vector.
type Sample struct {
	Labels map[string]string
	Value  float64
	At     time.Time
}

// Query runs an instant query at Prometheus's now and returns its vector.
// A result that is not a vector is an error: the gate's queries all are.
func (c *PromClient) Query(ctx context.Context, query string) ([]Sample, error) {
	timeout := c.Timeout
	if timeout <= 0 {
		timeout = defaultQueryTimeout
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	u := strings.TrimRight(c.URL, "/") + "/api/v1/query?" + url.Values{"query": {query}, "timeout": {timeout.String()}}.Encode()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
	if err != nil {
		return nil, fmt.Errorf("query %s: %w", c.URL, err)
	}
	hc := c.HTTP
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // the URL is already named, with the query spelled out
		}
		return nil, fmt.Errorf("query %s: %w", c.URL, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, 16<<20))
	if err != nil {
		return nil, fmt.Errorf("query %s: read the answer: %w", c.URL, err)
	}
	var r struct {
		Status    string `json:"status"`
		ErrorType string `json:"errorType"`
		Error     string `json:"error"`
		Data      struct {
			ResultType string          `json:"resultType"`
			Result     json.RawMessage `json:"result"`
		} `json:"data"`
	}
	if err := json.Unmarshal(body, &r); err != nil {
		return nil, fmt.Errorf("query %s: HTTP %d, not a Prometheus API answer: %w", c.URL, resp.StatusCode, err)
	}
	if r.Status != "success" {
		return nil, fmt.Errorf("query %s: HTTP %d: %s: %s", c.URL, resp.StatusCode, r.ErrorType, r.Error)
	}
	if r.Data.ResultType != "vector" {
		return nil, fmt.Errorf("query %s: result is a %s, want a vector", c.URL, r.Data.ResultType)
	}
	var vector []struct {
		Metric map[string]string `json:"metric"`
		Value  [2]any            `json:"value"`
	}
	if err := json.Unmarshal(r.Data.Result, &vector); err != nil {
		return nil, fmt.Errorf("query %s: bad vector: %w", c.URL, err)
	}
	out := make([]Sample, 0, len(vector))
	for _, e := range vector {
		ts, ok1 := e.Value[0].(float64)
		vs, ok2 := e.Value[1].(string)
		v, err := strconv.ParseFloat(vs, 64)
		if !ok1 || !ok2 || err != nil {
			return nil, fmt.Errorf("query %s: bad sample %v", c.URL, e.Value)
		}
		sec, frac := splitSeconds(ts)
		out = append(out, Sample{Labels: e.Metric, Value: v, At: time.Unix(sec, frac).UTC()})
	}
	return out, nil
}
