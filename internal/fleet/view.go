package fleet

import (
	"cmp"
	"context"
	"fmt"
	"io"
	"maps"
	"slices"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/gitopsd/gitopsd/internal/ids"
)

// The fleet view (`gitopsd fleet status`, `gitopsd fleet rollout`) reads
// Prometheus only. No per-stack metric carries the host: each gitopsd
// exports gitopsd_host_info{host} 1, and every other series is joined to
// its host on the target's (job, instance), which Prometheus attaches to
// every series it scrapes and federation keeps. The rollout's own metrics
// carry the host label and are read as they are.
//
// A host is "not reporting" when Prometheus saw its gitopsd_host_info
// within the lookback but its target's up is 0 or absent now (the target
// left service discovery): such a host gets one row, with no stacks.

// Metrics the view reads, beyond the gate's.
const (
	MetricHostInfo    = "gitopsd_host_info"
	MetricStackInfo   = "gitopsd_stack_info"
	MetricDrift       = "gitopsd_drift"
	MetricLastOutcome = "gitopsd_stack_last_outcome_info"
	MetricLastBackup  = "gitopsd_backup_last_success_timestamp_seconds"
	MetricHeld        = "gitopsd_rollout_held_info"
	// DefaultLookback is how far back a host that stopped reporting is
	// still listed.
	DefaultLookback = 24 * time.Hour
)

// StatusQueries are the instant queries of `fleet status`: eight,
// whatever the size of the fleet.
func StatusQueries(lookback time.Duration) map[string]string {
	return map[string]string{
		"hosts":    fmt.Sprintf(`max by (job, instance, host) (last_over_time(%s[%s]))`, MetricHostInfo, promDuration(lookback)),
		"up":       `up`,
		"stacks":   MetricStackInfo,
		"drift":    fmt.Sprintf(`count by (job, instance, stack) (%s)`, MetricDrift),
		"outcome":  MetricLastOutcome,
		"snapshot": fmt.Sprintf(`min by (job, instance, stack) (%s)`, MetricLastBackup),
		"wave":     MetricRolloutInfo,
		"held":     MetricHeld,
	}
}

func promDuration(d time.Duration) string {
	if d <= 0 {
		d = DefaultLookback
	}
	return strconv.FormatInt(int64(d/time.Second), 10) + "s"
}

// HostStack is one row of `fleet status`: a stack on a host, or a host
// alone (no stack: it reports none, or it does not report).
type HostStack struct {
	Host      string `json:"host"`
	Instance  string `json:"instance"`
	Reporting bool   `json:"reporting"`
	Stack     string `json:"stack,omitempty"`
	// Wave is the host's wave for the stack ("" with no rollout).
	Wave        string `json:"wave,omitempty"`
	Revision    string `json:"revision,omitempty"`
	Sync        string `json:"sync,omitempty"`
	Health      string `json:"health,omitempty"`
	Drift       int    `json:"drift"` // open drifts
	LastOutcome string `json:"last_outcome,omitempty"`
	// LastSnapshot is when the oldest of the stack's volumes had its last
	// good snapshot (nil: no snapshot, or no volume backed up).
	LastSnapshot *time.Time `json:"last_snapshot,omitempty"`
	// Held is the revision the rollout holds this host back from, and
	// the verdict (wait, halted, gate_error).
	Held *Held `json:"held,omitempty"`
}

// Held is a revision a host's rollout holds back.
type Held struct {
	Revision string `json:"revision"`
	Verdict  string `json:"verdict"`
}

// Status is the fleet as one Prometheus saw it.
type Status struct {
	Prometheus string      `json:"prometheus"`
	At         time.Time   `json:"at"`
	Rows       []HostStack `json:"rows"`
}

// ReadStatus asks Prometheus the status queries and joins them.
func ReadStatus(ctx context.Context, c *PromClient, lookback time.Duration) (Status, error) {
	res := map[string][]Sample{}
	for key, q := range StatusQueries(lookback) {
		s, err := c.Query(ctx, q)
		if err != nil {
			return Status{}, fmt.Errorf("fleet status: %w", err)
		}
		res[key] = s
	}
	st := BuildStatus(res)
	st.Prometheus, st.At = c.URL, time.Now().UTC()
	return st, nil
}

type target struct{ job, instance string }

func targetOf(s Sample) target { return target{s.Labels["job"], s.Labels["instance"]} }

// BuildStatus joins the answers to StatusQueries (by key) into rows,
// sorted by host, then stack. It is a pure function of the samples.
func BuildStatus(res map[string][]Sample) Status {
	hosts := map[target]string{}
	for _, s := range res["hosts"] {
		hosts[targetOf(s)] = s.Labels["host"]
	}
	up := map[target]bool{}
	for _, s := range res["up"] {
		up[targetOf(s)] = s.Value == 1
	}
	type key struct {
		t     target
		stack string
	}
	rows := map[key]*HostStack{}
	row := func(t target, stack string) *HostStack {
		k := key{t, stack}
		if r, ok := rows[k]; ok {
			return r
		}
		r := &HostStack{Host: hosts[t], Instance: t.instance, Reporting: true, Stack: stack}
		rows[k] = r
		return r
	}
	for _, s := range res["stacks"] {
		t := targetOf(s)
		if _, ok := hosts[t]; !ok || !up[t] {
			continue // not a gitopsd this view knows, or a stale series
		}
		r := row(t, s.Labels["stack"])
		r.Revision, r.Sync, r.Health = s.Labels["revision"], s.Labels["sync"], s.Labels["health"]
	}
	// The other per-stack series only fill rows stack_info made: a
	// stack's drift or snapshot outlives it in the record, not here.
	fill := func(query string, set func(*HostStack, Sample)) {
		for _, s := range res[query] {
			if r, ok := rows[key{targetOf(s), s.Labels["stack"]}]; ok {
				set(r, s)
			}
		}
	}
	fill("drift", func(r *HostStack, s Sample) { r.Drift = int(s.Value) })
	fill("outcome", func(r *HostStack, s Sample) { r.LastOutcome = s.Labels["outcome"] })
	fill("snapshot", func(r *HostStack, s Sample) {
		if s.Value > 0 {
			sec, frac := splitSeconds(s.Value)
			at := time.Unix(sec, frac).UTC()
			r.LastSnapshot = &at
		}
	})
	// The rollout's series name the host themselves.
	byHost := map[[2]string]*HostStack{}
	for _, r := range rows {
		byHost[[2]string{r.Host, r.Stack}] = r
	}
	for _, s := range res["wave"] {
		if r, ok := byHost[[2]string{s.Labels["host"], s.Labels["stack"]}]; ok {
			r.Wave = s.Labels["wave"]
		}
	}
	for _, s := range res["held"] {
		if r, ok := byHost[[2]string{s.Labels["host"], s.Labels["stack"]}]; ok {
			r.Held = &Held{Revision: s.Labels["revision"], Verdict: s.Labels["verdict"]}
		}
	}
	out := Status{Rows: []HostStack{}}
	seen := map[target]bool{}
	for _, r := range rows {
		out.Rows = append(out.Rows, *r)
	}
	for k := range rows {
		seen[k.t] = true
	}
	for t, host := range hosts {
		switch {
		case !up[t]:
			out.Rows = append(out.Rows, HostStack{Host: host, Instance: t.instance})
		case !seen[t]:
			out.Rows = append(out.Rows, HostStack{Host: host, Instance: t.instance, Reporting: true})
		}
	}
	slices.SortFunc(out.Rows, func(a, b HostStack) int {
		return cmp.Or(cmp.Compare(a.Host, b.Host), cmp.Compare(a.Instance, b.Instance), cmp.Compare(a.Stack, b.Stack))
	})
	return out
}

// WriteStatus prints the rows as a table; ages are measured from now.
func WriteStatus(w io.Writer, st Status, now time.Time) error {
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "HOST\tSTACK\tWAVE\tREVISION\tSYNC\tHEALTH\tDRIFT\tLAST OUTCOME\tSNAPSHOT AGE\tNOTE")
	for _, r := range st.Rows {
		if !r.Reporting {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\t-\t-\tnot reporting (%s)\n", r.Host, r.Instance)
			continue
		}
		if r.Stack == "" {
			fmt.Fprintf(tw, "%s\t-\t-\t-\t-\t-\t-\t-\t-\tno stack\n", r.Host)
			continue
		}
		age := "-"
		if r.LastSnapshot != nil {
			age = shortAge(now.Sub(*r.LastSnapshot))
		}
		note := ""
		if r.Held != nil {
			note = fmt.Sprintf("held from %s (%s)", ids.Short(r.Held.Revision), r.Held.Verdict)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%d\t%s\t%s\t%s\n", r.Host, r.Stack, dash(r.Wave), dash(ids.Short(r.Revision)),
			dash(r.Sync), dash(r.Health), r.Drift, dash(r.LastOutcome), age, note)
	}
	return tw.Flush()
}

func dash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

// shortAge is a duration as an operator reads it: 45s, 12m, 5h, 3d.
func shortAge(d time.Duration) string {
	switch {
	case d < 0:
		return "0s"
	case d < time.Minute:
		return fmt.Sprintf("%ds", int(d/time.Second))
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d/time.Minute))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh", int(d/time.Hour))
	}
	return fmt.Sprintf("%dd", int(d/(24*time.Hour)))
}

// RolloutQueries are the instant queries of `fleet rollout STACK`.
func RolloutQueries(stackName string) map[string]string {
	s := promQuote(stackName)
	return map[string]string{
		"targeting":  fmt.Sprintf(`%s{stack=%s}`, MetricRolloutInfo, s),
		"healthy":    fmt.Sprintf(`%s{stack=%s}`, MetricHealthySince, s),
		"rolledback": fmt.Sprintf(`%s{stack=%s}`, MetricRolledBack, s),
		"held":       fmt.Sprintf(`%s{stack=%s}`, MetricHeld, s),
	}
}

// RolloutView is one revision's progress through a stack's waves.
type RolloutView struct {
	Prometheus string         `json:"prometheus"`
	At         time.Time      `json:"at"`
	Stack      string         `json:"stack"`
	Revision   string         `json:"revision"` // "" when no host says anything of one
	Waves      []WaveProgress `json:"waves"`
}

// WaveProgress is where one wave's hosts are with the revision.
type WaveProgress struct {
	Wave  string   `json:"wave"` // "" for hosts with no rollout
	Hosts []string `json:"hosts"`
	// Healthy are the hosts running the revision Synced and Healthy,
	// with since when.
	Healthy    []HostSince `json:"healthy"`
	Held       []HostHeld  `json:"held"`
	RolledBack []string    `json:"rolled_back"`
	// Other are the wave's hosts doing none of that with the revision:
	// on another revision, rolling, or not healthy.
	Other []string `json:"other"`
}

// HostSince is a host healthy on the revision since a time.
type HostSince struct {
	Host  string    `json:"host"`
	Since time.Time `json:"since"`
}

// HostHeld is a host the rollout holds back from the revision.
type HostHeld struct {
	Host    string `json:"host"`
	Verdict string `json:"verdict"`
}

// ReadRollout asks Prometheus the rollout queries of a stack and builds
// the view of revision ("": the one the rollout is on, see BuildRollout).
func ReadRollout(ctx context.Context, c *PromClient, stackName, revision string) (RolloutView, error) {
	res := map[string][]Sample{}
	for key, q := range RolloutQueries(stackName) {
		s, err := c.Query(ctx, q)
		if err != nil {
			return RolloutView{}, fmt.Errorf("fleet rollout %s: %w", stackName, err)
		}
		res[key] = s
	}
	v := BuildRollout(stackName, revision, res)
	v.Prometheus, v.At = c.URL, time.Now().UTC()
	return v, nil
}

// BuildRollout is the progress of revision through the stack's waves, from
// the answers to RolloutQueries. With revision "", it is the revision the
// rollout is on: the one most held hosts wait for, else one a host rolled
// back that no host runs healthy, else the newest that hosts run healthy
// (the latest first healthy-since). Waves are ordered by when the revision
// reached them (a rollback counts as first), then by name: Prometheus
// does not know fleet.yaml's order, and the revision's path through the
// waves is that order.
func BuildRollout(stackName, revision string, res map[string][]Sample) RolloutView {
	if revision == "" {
		revision = currentRevision(res)
	} else {
		revision = completeRevision(revision, res)
	}
	waves := map[string]*WaveProgress{}
	wave := func(name string) *WaveProgress {
		if w, ok := waves[name]; ok {
			return w
		}
		w := &WaveProgress{Wave: name, Hosts: []string{}, Healthy: []HostSince{}, Held: []HostHeld{}, RolledBack: []string{}, Other: []string{}}
		waves[name] = w
		return w
	}
	first := map[string]time.Time{}
	accounted := map[string]bool{}
	mark := func(w, host string, at time.Time) {
		accounted[host] = true
		if f, ok := first[w]; !ok || at.Before(f) {
			first[w] = at
		}
	}
	for _, s := range res["targeting"] {
		w := wave(s.Labels["wave"])
		w.Hosts = append(w.Hosts, s.Labels["host"])
	}
	for _, s := range res["healthy"] {
		if s.Labels["revision"] != revision {
			continue
		}
		sec, frac := splitSeconds(s.Value)
		at := time.Unix(sec, frac).UTC()
		w := wave(s.Labels["wave"])
		w.Healthy = append(w.Healthy, HostSince{Host: s.Labels["host"], Since: at})
		mark(w.Wave, s.Labels["host"], at)
	}
	for _, s := range res["rolledback"] {
		if s.Labels["revision"] != revision {
			continue
		}
		w := wave(s.Labels["wave"])
		w.RolledBack = append(w.RolledBack, s.Labels["host"])
		mark(w.Wave, s.Labels["host"], time.Time{})
	}
	for _, s := range res["held"] {
		if s.Labels["revision"] != revision {
			continue
		}
		w := wave(s.Labels["wave"])
		w.Held = append(w.Held, HostHeld{Host: s.Labels["host"], Verdict: s.Labels["verdict"]})
		accounted[s.Labels["host"]] = true
	}
	v := RolloutView{Stack: stackName, Revision: revision, Waves: []WaveProgress{}}
	for _, w := range waves {
		for _, h := range w.Hosts {
			if !accounted[h] {
				w.Other = append(w.Other, h)
			}
		}
		slices.Sort(w.Hosts)
		slices.Sort(w.Other)
		slices.Sort(w.RolledBack)
		slices.SortFunc(w.Healthy, func(a, b HostSince) int { return cmp.Compare(a.Host, b.Host) })
		slices.SortFunc(w.Held, func(a, b HostHeld) int { return cmp.Compare(a.Host, b.Host) })
		v.Waves = append(v.Waves, *w)
	}
	slices.SortFunc(v.Waves, func(a, b WaveProgress) int {
		fa, oka := first[a.Wave]
		fb, okb := first[b.Wave]
		switch {
		case oka && okb && !fa.Equal(fb):
			return fa.Compare(fb)
		case oka != okb:
			if oka {
				return -1
			}
			return 1
		}
		return cmp.Compare(a.Wave, b.Wave)
	})
	return v
}

func currentRevision(res map[string][]Sample) string {
	held := map[string]int{}
	for _, s := range res["held"] {
		held[s.Labels["revision"]]++
	}
	if len(held) > 0 {
		return mostCommon(held)
	}
	healthy := map[string]time.Time{}
	for _, s := range res["healthy"] {
		sec, frac := splitSeconds(s.Value)
		at := time.Unix(sec, frac)
		r := s.Labels["revision"]
		if f, ok := healthy[r]; !ok || at.Before(f) {
			healthy[r] = at
		}
	}
	rolled := map[string]int{}
	for _, s := range res["rolledback"] {
		if _, runs := healthy[s.Labels["revision"]]; !runs {
			rolled[s.Labels["revision"]]++
		}
	}
	if len(rolled) > 0 {
		return mostCommon(rolled)
	}
	newest, at := "", time.Time{}
	for _, r := range slices.Sorted(maps.Keys(healthy)) {
		if healthy[r].After(at) {
			newest, at = r, healthy[r]
		}
	}
	return newest
}

// completeRevision is the full revision a prefix names among those the
// hosts report (the prefix itself when none or several start with it).
func completeRevision(prefix string, res map[string][]Sample) string {
	found := ""
	for _, key := range []string{"healthy", "rolledback", "held"} {
		for _, s := range res[key] {
			r := s.Labels["revision"]
			if !strings.HasPrefix(r, prefix) || r == found {
				continue
			}
			if found != "" {
				return prefix
			}
			found = r
		}
	}
	return cmp.Or(found, prefix)
}

// mostCommon is the key with the highest count, the smallest on a tie.
func mostCommon(n map[string]int) string {
	best := ""
	for _, k := range slices.Sorted(maps.Keys(n)) {
		if best == "" || n[k] > n[best] {
			best = k
		}
	}
	return best
}

// WriteRollout prints the progress wave by wave.
func WriteRollout(w io.Writer, v RolloutView, now time.Time) error {
	if v.Revision == "" {
		_, err := fmt.Fprintf(w, "stack %s: no host reports a revision of it to %s\n", v.Stack, v.Prometheus)
		return err
	}
	fmt.Fprintf(w, "stack %s, revision %s\n", v.Stack, ids.Short(v.Revision))
	tw := tabwriter.NewWriter(w, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "WAVE\tHOSTS\tHEALTHY ON IT\tHELD\tROLLED BACK\tOTHER")
	for _, wp := range v.Waves {
		healthy := make([]string, len(wp.Healthy))
		for i, h := range wp.Healthy {
			healthy[i] = fmt.Sprintf("%s (%s)", h.Host, shortAge(now.Sub(h.Since)))
		}
		held := make([]string, len(wp.Held))
		for i, h := range wp.Held {
			held[i] = fmt.Sprintf("%s (%s)", h.Host, h.Verdict)
		}
		fmt.Fprintf(tw, "%s\t%d\t%s\t%s\t%s\t%s\n", dash(wp.Wave), len(wp.Hosts), list(healthy), list(held), list(wp.RolledBack), list(wp.Other))
	}
	return tw.Flush()
}

func list(s []string) string {
	if len(s) == 0 {
		return "-"
	}
	return fmt.Sprintf("%d: %s", len(s), strings.Join(s, ", "))
}
