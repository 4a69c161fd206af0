package stack

import (
	"fmt"
	"sort"
	"strings"

	"github.com/compose-spec/compose-go/v2/template"
	"github.com/compose-spec/compose-go/v2/types"
	"go.yaml.in/yaml/v3"
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
// health, update, rollout: internal/fleet) are only checked to exist here.
var knownOptions = map[string]bool{"targets": true, "drift": true, "profiles": true, "backup": true, "health": true, "update": true, "rollout": true}

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
			return opts, &optionError{path: k, msg: fmt.Sprintf("unknown key %q (known: backup, drift, health, profiles, rollout, targets, update)", k)}
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
	if v, ok := m["profiles"]; ok {
		p, err := parseProfiles(v)
		if err != nil {
			return opts, err
		}
		opts.Profiles = p
	}
	return opts, nil
}

// parseProfiles reads x-gitopsd.profiles: the profiles to activate, as
// `docker compose --profile` would. The result is never nil, so that an
// empty list (activate none, whatever .env says) differs from no key.
// An empty entry activates nothing, as in COMPOSE_PROFILES, so that
// "${GITOPSD_LABEL_ROLE}" is harmless on a host without that label; "*"
// activates every profile, as in compose. Names are not checked further:
// compose allows any string as a service's profile.
func parseProfiles(v any) ([]string, error) {
	list, ok := v.([]any)
	if !ok {
		return nil, &optionError{path: "profiles", msg: "must be a list of profile names"}
	}
	profiles := make([]string, 0, len(list))
	for i, item := range list {
		s, ok := item.(string)
		if !ok {
			return nil, &optionError{path: fmt.Sprintf("profiles.%d", i), msg: fmt.Sprintf("must be a profile name, not %v", item)}
		}
		profiles = append(profiles, s)
	}
	return profiles, nil
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

// declaredTargets reads x-gitopsd.targets from the selected compose files
// as written, interpolated with env as compose-go interpolates them, so
// that a host can pass over a stack for other hosts without reading any
// other file of it. ok is false, and the whole load decides, wherever this
// reading could differ from the loaded project's: x-gitopsd set in more
// than one file or document (compose-go merges them) or not visibly (a
// merge key), a custom tag (!reset, !override), no targets, a value that
// does not interpolate or parse (the whole load says what is wrong).
func declaredTargets(files []string, env types.Mapping) (Targets, bool) {
	var found []*yaml.Node
	for _, f := range files {
		for _, doc := range parseFile(f) {
			found = append(found, under(doc, []string{"x-gitopsd"})...)
		}
	}
	if len(found) != 1 || !untagged(found[0], 0) {
		return Targets{}, false
	}
	var raw map[string]any
	if err := found[0].Decode(&raw); err != nil || raw["targets"] == nil {
		return Targets{}, false
	}
	v, err := interpolated(raw["targets"], env)
	if err != nil {
		return Targets{}, false
	}
	t, err := parseTargets(v)
	if err != nil {
		return Targets{}, false
	}
	return t, true
}

// untagged says whether n holds no tag but YAML's own (!!str, ...).
// Aliases are followed to a bounded depth: the file's aliases were
// checked before (checkAliases), this only keeps the walk finite.
func untagged(n *yaml.Node, depth int) bool {
	if n == nil || depth > 100 {
		return n == nil
	}
	if n.Tag != "" && !strings.HasPrefix(n.Tag, "!!") {
		return false
	}
	if n.Kind == yaml.AliasNode {
		return untagged(n.Alias, depth+1)
	}
	for _, c := range n.Content {
		if !untagged(c, depth+1) {
			return false
		}
	}
	return true
}

// interpolated is v with its strings interpolated as compose-go does.
func interpolated(v any, env types.Mapping) (any, error) {
	switch v := v.(type) {
	case string:
		return template.SubstituteWithOptions(v, env.Resolve, template.WithoutLogging)
	case []any:
		out := make([]any, len(v))
		for i, item := range v {
			s, err := interpolated(item, env)
			if err != nil {
				return nil, err
			}
			out[i] = s
		}
		return out, nil
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, item := range v {
			s, err := interpolated(item, env)
			if err != nil {
				return nil, err
			}
			out[k] = s
		}
		return out, nil
	}
	return v, nil
}
