package stack

import (
	"fmt"
	"sort"
	"strings"
)

// optionError is a bad value in x-gitopsd, with its key path under it.
type optionError struct {
	path, msg string
}

func (e *optionError) Error() string { return e.keyPath() + ": " + e.msg }

// keyPath is where the bad value sits in the compose file.
func (e *optionError) keyPath() string {
	if e.path == "" {
		return "x-gitopsd"
	}
	return "x-gitopsd." + e.path
}

// knownOptions are the keys of x-gitopsd; the ones parsed elsewhere (backup,
// health, update) are only checked to exist here.
var knownOptions = map[string]bool{"targets": true, "drift": true, "backup": true, "health": true, "update": true}

// parseOptions reads the x-gitopsd extension (nil when absent).
func parseOptions(raw any) (Options, error) {
	opts := Options{Drift: DriftHeal}
	if raw == nil {
		return opts, nil
	}
	m, ok := raw.(map[string]any)
	if !ok {
		return opts, &optionError{msg: "must be a mapping"}
	}
	opts.Raw = m
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !knownOptions[k] {
			return opts, &optionError{path: k, msg: fmt.Sprintf("unknown key %q (known: backup, drift, health, targets, update)", k)}
		}
	}
	if v, ok := m["drift"]; ok {
		s, _ := v.(string)
		switch DriftPolicy(s) {
		case DriftHeal, DriftReport:
			opts.Drift = DriftPolicy(s)
		default:
			return opts, &optionError{path: "drift", msg: fmt.Sprintf("must be heal or report, not %v", v)}
		}
	}
	if v, ok := m["targets"]; ok {
		t, err := parseTargets(v)
		if err != nil {
			return opts, err
		}
		opts.Targets = t
	}
	return opts, nil
}

func parseTargets(v any) (Targets, error) {
	var t Targets
	m, ok := v.(map[string]any)
	if !ok {
		return t, &optionError{path: "targets", msg: "must be a mapping with hosts and/or labels"}
	}
	for k, val := range m {
		switch k {
		case "hosts":
			list, ok := val.([]any)
			if !ok {
				return t, &optionError{path: "targets.hosts", msg: "must be a list of host name patterns"}
			}
			for i, item := range list {
				s, ok := item.(string)
				if !ok || strings.TrimSpace(s) == "" {
					return t, &optionError{path: fmt.Sprintf("targets.hosts.%d", i), msg: "must be a non-empty host name pattern"}
				}
				if _, err := matchPattern(s); err != nil {
					return t, &optionError{path: fmt.Sprintf("targets.hosts.%d", i), msg: fmt.Sprintf("bad pattern %q: %v", s, err)}
				}
				t.Hosts = append(t.Hosts, s)
			}
		case "labels":
			lm, ok := val.(map[string]any)
			if !ok {
				return t, &optionError{path: "targets.labels", msg: "must be a mapping of label: value"}
			}
			t.Labels = map[string]string{}
			for lk, lv := range lm {
				switch lv.(type) {
				case string, int, bool, float64:
					t.Labels[lk] = fmt.Sprint(lv)
				default:
					return t, &optionError{path: "targets.labels." + lk, msg: "must be a scalar value"}
				}
			}
		default:
			return t, &optionError{path: "targets." + k, msg: fmt.Sprintf("unknown key %q (known: hosts, labels)", k)}
		}
	}
	return t, nil
}
