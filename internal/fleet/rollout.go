package fleet

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"math"
	"net/url"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"time"

	"go.yaml.in/yaml/v3"
)

// FileName is the fleet file, at the repository root.
const FileName = "fleet.yaml"

// Rollout is how a new revision of a stack spreads over the fleet.
type Rollout struct {
	// Waves in order; a host is in the first one whose selector matches.
	// A host no wave selects is in an implicit last wave (see WaveName).
	Waves []Wave
	// Soak is how long the previous wave must have run a revision healthy
	// (with a gate) or how long after the previous wave's turn (without)
	// the next wave starts.
	Soak time.Duration
	// Gate, if set, judges the previous wave through Prometheus; nil: the
	// waves are a time stagger only.
	Gate *Gate
}

// SelectorKind is how a wave chooses its hosts.
type SelectorKind string

const (
	SelectLabels  SelectorKind = "labels"  // every label given must match
	SelectNames   SelectorKind = "names"   // any glob (path.Match) matches the host name
	SelectPercent SelectorKind = "percent" // the host name's bucket is below Percent
	SelectAll     SelectorKind = "all"     // catch-all: no selector
)

// Wave is one step of a rollout.
type Wave struct {
	Name    string
	Kind    SelectorKind
	Labels  map[string]string // SelectLabels
	Names   []string          // SelectNames
	Percent float64           // SelectPercent: (0, 100], a cumulative threshold on the bucket scale
}

// OnError is what a host does when the gate cannot be asked.
type OnError string

const (
	OnErrorHold    OnError = "hold"    // fail closed: keep what runs (the default)
	OnErrorProceed OnError = "proceed" // apply as if the gate had said yes
)

// Gate is the rollout's reading of the fleet's health.
type Gate struct {
	PrometheusURL string
	// Healthy is the share, in (0, 1], of the previous wave's hosts that
	// target the stack which must have run the revision healthy for Soak.
	Healthy float64
	OnError OnError
}

// Error is a rollout that does not load, naming the file, line and key:
//
//	fleet.yaml:7: rollout.waves.1.percent: "110" must be a percent in (0, 100]
type Error struct {
	File string // relative to the repository root
	Line int    // 0 when unknown
	Key  string // dotted path: rollout.waves.1.percent
	Msg  string
}

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString(e.File)
	if e.Line > 0 {
		fmt.Fprintf(&b, ":%d", e.Line)
	}
	b.WriteString(": ")
	if e.Key != "" {
		b.WriteString(e.Key + ": ")
	}
	b.WriteString(e.Msg)
	return b.String()
}

// Load reads fleet.yaml at the root of the checkout repoDir. No file is no
// rollout (nil, nil): every host applies a revision as soon as it sees it.
func Load(repoDir string) (*Rollout, error) {
	b, err := os.ReadFile(filepath.Join(repoDir, FileName))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", FileName, err)
	}
	return Parse(FileName, b)
}

// Parse reads the text of a fleet file; file names it in errors.
func Parse(file string, b []byte) (*Rollout, error) {
	var doc yaml.Node
	dec := yaml.NewDecoder(bytes.NewReader(b))
	if err := dec.Decode(&doc); err != nil {
		if errors.Is(err, io.EOF) {
			return nil, &Error{File: file, Msg: "empty: want a rollout: mapping"}
		}
		return nil, &Error{File: file, Msg: "invalid YAML: " + strings.TrimPrefix(err.Error(), "yaml: ")}
	}
	var extra yaml.Node
	if err := dec.Decode(&extra); err == nil {
		return nil, &Error{File: file, Line: extra.Line, Msg: "more than one YAML document"}
	}
	p := parser{file: file}
	root := doc.Content[0]
	if root.Kind != yaml.MappingNode {
		return nil, p.bad(root, "", "must be a mapping with a rollout: key")
	}
	var rollout *yaml.Node
	if err := p.fields(root, "", map[string]func(k, v *yaml.Node) error{
		"rollout": func(_, v *yaml.Node) error { rollout = v; return nil },
	}); err != nil {
		return nil, err
	}
	if rollout == nil {
		return nil, p.bad(root, "", "no rollout: key")
	}
	return p.rollout(rollout, "rollout")
}

// parser reads yaml.v3 nodes, so that every error can name its line.
type parser struct {
	file string
	// lineOf, if set, finds the line of a key path when the nodes carry
	// none (a stack's x-gitopsd.rollout comes already decoded).
	lineOf func(key string) int
}

func (p parser) bad(n *yaml.Node, key, format string, a ...any) *Error {
	e := &Error{File: p.file, Key: key, Msg: fmt.Sprintf(format, a...)}
	if n != nil {
		e.Line = n.Line
	}
	if p.lineOf != nil {
		if l := p.lineOf(key); l > 0 {
			e.Line = l
		}
	}
	return e
}

// line is the line of n, or of key when the nodes carry no lines.
func (p parser) line(n *yaml.Node, key string) int {
	if n.Line == 0 && p.lineOf != nil {
		return p.lineOf(key)
	}
	return n.Line
}

func join(prefix, key string) string {
	if prefix == "" {
		return key
	}
	return prefix + "." + key
}

// fields walks a mapping, refusing keys not in known and duplicates.
func (p parser) fields(n *yaml.Node, prefix string, known map[string]func(k, v *yaml.Node) error) error {
	if n.Kind != yaml.MappingNode {
		return p.bad(n, prefix, "must be a mapping")
	}
	seen := map[string]int{}
	for i := 0; i+1 < len(n.Content); i += 2 {
		k, v := n.Content[i], n.Content[i+1]
		if k.Value == "<<" {
			return p.bad(k, prefix, "YAML merge keys (<<) are not supported")
		}
		key := join(prefix, k.Value)
		if first, dup := seen[k.Value]; dup {
			return p.bad(k, key, "duplicate key (first at line %d)", first)
		}
		seen[k.Value] = k.Line
		f, ok := known[k.Value]
		if !ok {
			return p.bad(k, key, "unknown key (known: %s)", knownList(known))
		}
		if err := f(k, v); err != nil {
			return err
		}
	}
	return nil
}

func knownList(known map[string]func(k, v *yaml.Node) error) string {
	keys := make([]string, 0, len(known))
	for k := range known {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return strings.Join(keys, ", ")
}

func (p parser) rollout(n *yaml.Node, prefix string) (*Rollout, error) {
	r := &Rollout{}
	var wavesNode *yaml.Node
	err := p.fields(n, prefix, map[string]func(k, v *yaml.Node) error{
		"waves": func(_, v *yaml.Node) error { wavesNode = v; return nil },
		"soak": func(_, v *yaml.Node) error {
			d, err := p.duration(v, join(prefix, "soak"))
			r.Soak = d
			return err
		},
		"gate": func(_, v *yaml.Node) error {
			g, err := p.gate(v, join(prefix, "gate"))
			r.Gate = g
			return err
		},
	})
	if err != nil {
		return nil, err
	}
	if wavesNode == nil {
		return nil, p.bad(n, join(prefix, "waves"), "required: a list of waves")
	}
	if r.Waves, err = p.waves(wavesNode, join(prefix, "waves")); err != nil {
		return nil, err
	}
	if r.Gate != nil && len(r.Waves) < 2 && r.Waves[len(r.Waves)-1].Kind == SelectAll {
		// One catch-all wave has no previous wave to ask about.
		return nil, p.bad(n, join(prefix, "gate"), "a gate needs at least two waves")
	}
	return r, nil
}

func (p parser) duration(n *yaml.Node, key string) (time.Duration, error) {
	if n.Kind != yaml.ScalarNode {
		return 0, p.bad(n, key, "must be a duration such as 30s, 15m or 1h")
	}
	d, err := time.ParseDuration(n.Value)
	if err != nil || d < 0 {
		return 0, p.bad(n, key, "%q is not a duration such as 30s, 15m or 1h", n.Value)
	}
	return d, nil
}

func (p parser) percent(n *yaml.Node, key string) (float64, error) {
	if n.Kind != yaml.ScalarNode {
		return 0, p.bad(n, key, "must be a percent such as 10 or 10%%")
	}
	v, err := strconv.ParseFloat(strings.TrimSpace(strings.TrimSuffix(n.Value, "%")), 64)
	if err != nil || math.IsNaN(v) || v <= 0 || v > 100 {
		return 0, p.bad(n, key, "%q must be a percent in (0, 100]", n.Value)
	}
	return v, nil
}

func (p parser) gate(n *yaml.Node, prefix string) (*Gate, error) {
	g := &Gate{Healthy: 1, OnError: OnErrorHold}
	err := p.fields(n, prefix, map[string]func(k, v *yaml.Node) error{
		"prometheus": func(_, v *yaml.Node) error {
			return p.fields(v, join(prefix, "prometheus"), map[string]func(k, v *yaml.Node) error{
				"url": func(_, v *yaml.Node) error {
					key := join(prefix, "prometheus.url")
					u, err := url.Parse(v.Value)
					if v.Kind != yaml.ScalarNode || err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
						return p.bad(v, key, "%q is not an http(s) URL", v.Value)
					}
					g.PrometheusURL = strings.TrimRight(v.Value, "/")
					return nil
				},
			})
		},
		"healthy": func(_, v *yaml.Node) error {
			pc, err := p.percent(v, join(prefix, "healthy"))
			g.Healthy = pc / 100
			return err
		},
		"on_error": func(_, v *yaml.Node) error {
			switch OnError(v.Value) {
			case OnErrorHold, OnErrorProceed:
				g.OnError = OnError(v.Value)
				return nil
			}
			return p.bad(v, join(prefix, "on_error"), "%q must be hold or proceed", v.Value)
		},
	})
	if err != nil {
		return nil, err
	}
	if g.PrometheusURL == "" {
		return nil, p.bad(n, join(prefix, "prometheus.url"), "required: the Prometheus that scrapes the fleet")
	}
	return g, nil
}

func (p parser) waves(n *yaml.Node, prefix string) ([]Wave, error) {
	if n.Kind != yaml.SequenceNode || len(n.Content) == 0 {
		return nil, p.bad(n, prefix, "must be a non-empty list of waves")
	}
	var waves []Wave
	names := map[string]int{}
	lastPercent := 0.0
	for i, item := range n.Content {
		key := fmt.Sprintf("%s.%d", prefix, i)
		if len(waves) > 0 && waves[len(waves)-1].Kind == SelectAll {
			return nil, p.bad(item, key, "comes after the catch-all wave %q, which leaves no host for it", waves[len(waves)-1].Name)
		}
		w, err := p.wave(item, key)
		if err != nil {
			return nil, err
		}
		if first, dup := names[w.Name]; dup {
			return nil, p.bad(item, key+".name", "duplicate wave name %q (first at line %d)", w.Name, first)
		}
		names[w.Name] = p.line(item, key)
		if w.Kind == SelectPercent {
			if w.Percent <= lastPercent {
				return nil, p.bad(item, key+".percent", "%v is not above the previous percent wave's %v: percents are cumulative", w.Percent, lastPercent)
			}
			lastPercent = w.Percent
		}
		waves = append(waves, w)
	}
	return waves, nil
}

func (p parser) wave(n *yaml.Node, prefix string) (Wave, error) {
	w := Wave{Kind: SelectAll}
	selectors := 0
	sel := func(k *yaml.Node) error {
		selectors++
		if selectors > 1 {
			return p.bad(k, join(prefix, k.Value), "a wave has one selector: hosts or percent, not both (neither: the catch-all)")
		}
		return nil
	}
	err := p.fields(n, prefix, map[string]func(k, v *yaml.Node) error{
		"name": func(_, v *yaml.Node) error {
			if v.Kind != yaml.ScalarNode || !waveNameOK(v.Value) {
				return p.bad(v, join(prefix, "name"), "%q must be a wave name (letters, digits, '-', '_')", v.Value)
			}
			w.Name = v.Value
			return nil
		},
		"percent": func(k, v *yaml.Node) error {
			if err := sel(k); err != nil {
				return err
			}
			pc, err := p.percent(v, join(prefix, "percent"))
			w.Kind, w.Percent = SelectPercent, pc
			return err
		},
		"hosts": func(k, v *yaml.Node) error {
			if err := sel(k); err != nil {
				return err
			}
			return p.hosts(v, join(prefix, "hosts"), &w)
		},
	})
	if err != nil {
		return w, err
	}
	if w.Name == "" {
		return w, p.bad(n, join(prefix, "name"), "required")
	}
	return w, nil
}

func (p parser) hosts(n *yaml.Node, prefix string, w *Wave) error {
	err := p.fields(n, prefix, map[string]func(k, v *yaml.Node) error{
		"labels": func(k, v *yaml.Node) error {
			if w.Kind != SelectAll {
				return p.bad(k, join(prefix, "labels"), "a wave has one selector: labels or names, not both")
			}
			w.Kind, w.Labels = SelectLabels, map[string]string{}
			return p.fields(v, join(prefix, "labels"), anyKey(func(k, v *yaml.Node) error {
				if v.Kind != yaml.ScalarNode {
					return p.bad(v, join(prefix, "labels."+k.Value), "must be a scalar value")
				}
				w.Labels[k.Value] = v.Value
				return nil
			}, v))
		},
		"names": func(k, v *yaml.Node) error {
			if w.Kind != SelectAll {
				return p.bad(k, join(prefix, "names"), "a wave has one selector: labels or names, not both")
			}
			w.Kind = SelectNames
			if v.Kind != yaml.SequenceNode || len(v.Content) == 0 {
				return p.bad(v, join(prefix, "names"), "must be a non-empty list of host name globs")
			}
			for i, item := range v.Content {
				if _, err := path.Match(item.Value, ""); item.Kind != yaml.ScalarNode || item.Value == "" || err != nil {
					return p.bad(item, fmt.Sprintf("%s.names.%d", prefix, i), "%q is not a host name glob", item.Value)
				}
				w.Names = append(w.Names, item.Value)
			}
			return nil
		},
	})
	if err != nil {
		return err
	}
	if w.Kind == SelectAll || (w.Kind == SelectLabels && len(w.Labels) == 0) {
		return p.bad(n, prefix, "must select by labels or names (leave hosts out for the catch-all)")
	}
	return nil
}

// anyKey accepts every key of the mapping v with f.
func anyKey(f func(k, v *yaml.Node) error, v *yaml.Node) map[string]func(k, v *yaml.Node) error {
	m := map[string]func(k, v *yaml.Node) error{}
	if v.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(v.Content); i += 2 {
			m[v.Content[i].Value] = f
		}
	}
	return m
}

func waveNameOK(s string) bool {
	if s == "" || len(s) > 63 {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}
