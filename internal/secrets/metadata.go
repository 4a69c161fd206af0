package secrets

import (
	"crypto/subtle"
	"errors"
	"fmt"
	"math"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"
)

// metadata is what the "sops" section of a file says about decrypting it.
type metadata struct {
	lastModified     time.Time // the MAC's additional data
	mac              string    // ENC[...] of the hex MAC
	macOnlyEncrypted bool
	rule             rule
	groups           []keyGroup
	threshold        int // key groups needed when there are several (Shamir)
}

// keyGroup is one group of master keys; every key in a group encrypts the
// same data key, or the same Shamir share of it.
type keyGroup struct {
	age []ageKey
	// others lists the kinds of non-age keys (pgp, kms, ...) in the group,
	// which gitopsd cannot use but names in errors.
	others []string
}

// ageKey is one age recipient and the data key (or share) encrypted for it.
type ageKey struct {
	recipient string
	enc       string // ASCII-armored age file
}

// sopsPrefix marks the flattened metadata keys of dotenv files.
const sopsPrefix = "sops_"

// extractMetadata takes the SOPS metadata out of branches and returns the
// branches without it and the metadata as a mapping. YAML and JSON keep it
// under the first document's top-level "sops" key; sops drops a "sops" key
// from later YAML documents too. Dotenv files spread it over "sops_"-prefixed
// keys, flattened with "__map_" and "__list_N" separators.
func extractMetadata(branches []mapping, f Format) ([]mapping, mapping, error) {
	notSOPS := fmt.Errorf("%w: no sops metadata", ErrNotSOPS)
	if len(branches) == 0 {
		return nil, nil, notSOPS
	}
	var raw mapping
	found := false
	if f == Dotenv {
		var flat mapping
		branches[0] = slices.DeleteFunc(branches[0], func(e entry) bool {
			k, ok := e.key.(string)
			if !ok || !strings.HasPrefix(k, sopsPrefix) {
				return false
			}
			flat = append(flat, entry{key: strings.TrimPrefix(k, sopsPrefix), value: e.value})
			return true
		})
		if flat == nil {
			return nil, nil, notSOPS
		}
		var err error
		if raw, err = unflatten(flat); err != nil {
			return nil, nil, fmt.Errorf("sops metadata: %w", err)
		}
		return branches, raw, nil
	}
	for i, b := range branches {
		var err error
		branches[i] = slices.DeleteFunc(b, func(e entry) bool {
			if k, ok := e.key.(string); !ok || k != "sops" {
				return false
			}
			if i > 0 {
				return true
			}
			m, ok := e.value.(mapping)
			switch {
			case found:
				err = errors.New(`duplicate "sops" key`)
			case !ok:
				err = errors.New(`"sops" is not a mapping`)
			}
			raw, found = m, true
			return true
		})
		if err != nil {
			return nil, nil, fmt.Errorf("sops metadata: %w", err)
		}
	}
	if !found {
		return nil, nil, notSOPS
	}
	return branches, raw, nil
}

// decodeMetadata reads the fields gitopsd needs from the metadata mapping.
// Like sops, it accepts scalars of the "wrong" type where they convert
// (dotenv metadata is all strings).
func decodeMetadata(raw mapping) (*metadata, error) {
	m := &metadata{}
	var strErr error
	str := func(key string) string {
		v, _ := raw.get(key)
		s, err := weakString(v)
		if err != nil && strErr == nil {
			strErr = fmt.Errorf("%s: %w", key, err)
		}
		return s
	}
	lastModified := str("lastmodified")
	m.mac = str("mac")
	rule, err := decodeRule(str)
	if err != nil {
		return nil, err
	}
	if strErr != nil {
		return nil, strErr
	}
	m.rule = rule
	if m.lastModified, err = time.Parse(time.RFC3339, lastModified); err != nil {
		return nil, errors.New("lastmodified is not an RFC 3339 time")
	}
	if v, ok := raw.get("mac_only_encrypted"); ok {
		if m.macOnlyEncrypted, err = weakBool(v); err != nil {
			return nil, fmt.Errorf("mac_only_encrypted: %w", err)
		}
	}
	if v, ok := raw.get("shamir_threshold"); ok {
		if m.threshold, err = weakInt(v); err != nil {
			return nil, fmt.Errorf("shamir_threshold: %w", err)
		}
	}
	if m.groups, err = decodeKeyGroups(raw); err != nil {
		return nil, err
	}
	return m, nil
}

// decodeRule finds the file's one encryption rule.
func decodeRule(str func(string) string) (rule, error) {
	var rules []rule
	for _, c := range []struct {
		key  string
		kind ruleKind
	}{
		{"unencrypted_suffix", unencryptedSuffix},
		{"encrypted_suffix", encryptedSuffix},
		{"unencrypted_regex", unencryptedRegex},
		{"encrypted_regex", encryptedRegex},
		{"unencrypted_comment_regex", unencryptedCommentRegex},
		{"encrypted_comment_regex", encryptedCommentRegex},
	} {
		s := str(c.key)
		if s == "" {
			continue
		}
		r := rule{kind: c.kind}
		if c.kind == unencryptedSuffix || c.kind == encryptedSuffix {
			r.suffix = s
		} else {
			// sops ignores a regex that does not compile: it never
			// matches. A nil pattern does the same.
			r.pattern, _ = regexp.Compile(s)
		}
		rules = append(rules, r)
	}
	switch len(rules) {
	case 0:
		return rule{kind: unencryptedSuffix, suffix: "_unencrypted"}, nil
	case 1:
		return rules[0], nil
	}
	return rule{}, errors.New("more than one of encrypted_suffix, unencrypted_suffix, encrypted_regex, unencrypted_regex, encrypted_comment_regex, unencrypted_comment_regex")
}

// decodeKeyGroups reads the master keys: either one implicit group of
// top-level key lists, or a key_groups list when the data key is split.
func decodeKeyGroups(raw mapping) ([]keyGroup, error) {
	top, err := decodeKeyGroup(raw)
	if err != nil {
		return nil, err
	}
	if len(top.age) > 0 || len(top.others) > 0 {
		return []keyGroup{top}, nil
	}
	v, _ := raw.get("key_groups")
	list, ok := v.(sequence)
	if !ok || len(list) == 0 {
		return nil, errors.New("no master keys")
	}
	var groups []keyGroup
	for i, item := range list {
		if _, ok := item.(comment); ok {
			continue
		}
		m, ok := item.(mapping)
		if !ok {
			return nil, fmt.Errorf("key_groups[%d] is not a mapping", i)
		}
		g, err := decodeKeyGroup(m)
		if err != nil {
			return nil, fmt.Errorf("key_groups[%d]: %w", i, err)
		}
		groups = append(groups, g)
	}
	return groups, nil
}

// decodeKeyGroup reads the age keys of one group and notes the other kinds.
func decodeKeyGroup(raw mapping) (keyGroup, error) {
	var g keyGroup
	// The master key types other than age, in the order sops writes them.
	for _, kind := range [...]string{"kms", "gcp_kms", "hckms", "azure_kv", "hc_vault", "pgp"} {
		if v, ok := raw.get(kind); ok && !isEmptyList(v) {
			g.others = append(g.others, kind)
		}
	}
	v, ok := raw.get("age")
	if !ok || v == nil {
		return g, nil
	}
	list, ok := v.(sequence)
	if !ok {
		return g, errors.New("age is not a list")
	}
	for i, item := range list {
		if _, ok := item.(comment); ok {
			continue
		}
		m, ok := item.(mapping)
		if !ok {
			return g, fmt.Errorf("age[%d] is not a mapping", i)
		}
		var k ageKey
		var err error
		r, _ := m.get("recipient")
		if k.recipient, err = weakString(r); err != nil {
			return g, fmt.Errorf("age[%d].recipient: %w", i, err)
		}
		e, _ := m.get("enc")
		if k.enc, err = weakString(e); err != nil {
			return g, fmt.Errorf("age[%d].enc: %w", i, err)
		}
		g.age = append(g.age, k)
	}
	return g, nil
}

// isEmptyList reports whether v is null or a list without entries.
func isEmptyList(v any) bool {
	switch v := v.(type) {
	case nil:
		return true
	case sequence:
		for _, item := range v {
			if _, ok := item.(comment); !ok {
				return false
			}
		}
		return true
	}
	return false
}

// verifyMAC checks the MAC computed over the decrypted values against the
// file's. The file's MAC is encrypted with the data key, its additional data
// being the lastmodified time reformatted as RFC 3339, so neither can be
// swapped from another file or edited alone.
func (m *metadata) verifyMAC(computed string, key []byte) error {
	stored, err := decryptValue(m.mac, key, m.lastModified.Format(time.RFC3339))
	if err != nil {
		return fmt.Errorf("%w (cannot decrypt the stored MAC: %v)", ErrMACMismatch, err)
	}
	s, ok := stored.(string)
	if !ok || subtle.ConstantTimeCompare([]byte(s), []byte(computed)) != 1 {
		return ErrMACMismatch
	}
	return nil
}

// weakString reads a scalar as a string the way sops's metadata decoder
// (mapstructure with weak typing) does.
func weakString(v any) (string, error) {
	switch v := v.(type) {
	case nil:
		return "", nil
	case string:
		return v, nil
	case int:
		return strconv.Itoa(v), nil
	case float64:
		return strconv.FormatFloat(v, 'f', -1, 64), nil
	case bool:
		if v {
			return "1", nil
		}
		return "0", nil
	}
	return "", fmt.Errorf("want a string, have a %s", typeName(v))
}

// weakBool reads a scalar as a boolean, as weakString does.
func weakBool(v any) (bool, error) {
	switch v := v.(type) {
	case nil:
		return false, nil
	case bool:
		return v, nil
	case int:
		return v != 0, nil
	case float64:
		return v != 0, nil
	case string:
		if v == "" {
			return false, nil
		}
		b, err := strconv.ParseBool(v)
		if err != nil {
			return false, fmt.Errorf("want a boolean, have %q", v)
		}
		return b, nil
	}
	return false, fmt.Errorf("want a boolean, have a %s", typeName(v))
}

// weakInt reads a scalar as an integer, as weakString does.
func weakInt(v any) (int, error) {
	switch v := v.(type) {
	case nil:
		return 0, nil
	case int:
		return v, nil
	case bool:
		if v {
			return 1, nil
		}
		return 0, nil
	case float64:
		if v != math.Trunc(v) || math.Abs(v) > 1<<31 {
			return 0, fmt.Errorf("want an integer, have %v", v)
		}
		return int(v), nil
	case string:
		if v == "" {
			return 0, nil
		}
		n, err := strconv.Atoi(v)
		if err != nil {
			return 0, fmt.Errorf("want an integer, have %q", v)
		}
		return n, nil
	}
	return 0, fmt.Errorf("want an integer, have a %s", typeName(v))
}

// The separators sops uses to flatten nested metadata into dotenv keys:
// age__list_0__map_recipient is age[0].recipient.
const (
	flatMapSep  = "__map_"
	flatListSep = "__list_"
)

// maxFlatDepth bounds the nesting of flattened metadata; real metadata
// nests four deep (key_groups, a group, age, a key).
const maxFlatDepth = 16

// unflatten rebuilds nested metadata from flattened dotenv keys.
func unflatten(flat mapping) (mapping, error) {
	root := &flatNode{}
	for _, e := range flat {
		key, _ := e.key.(string)
		steps := splitFlatKey(key)
		if len(steps) > maxFlatDepth {
			return nil, fmt.Errorf("key %s%s nests deeper than %d", sopsPrefix, key, maxFlatDepth)
		}
		n := root
		for _, step := range steps {
			n = n.child(step)
		}
		if n.set {
			return nil, fmt.Errorf("duplicate key %s%s", sopsPrefix, key)
		}
		n.value, n.set = e.value, true
	}
	v, err := root.build()
	if err != nil {
		return nil, err
	}
	m, ok := v.(mapping)
	if !ok {
		return nil, errors.New("not a mapping")
	}
	return m, nil
}

// flatStep is one step of a flattened key: a map key, or a list index
// when isIndex.
type flatStep struct {
	key     string
	index   int
	isIndex bool
}

// splitFlatKey splits a flattened key at its separators.
func splitFlatKey(key string) []flatStep {
	var steps []flatStep
	sep := "" // the separator that introduced the current step
	for {
		i, next := nextFlatSep(key)
		part := key
		if i >= 0 {
			part = key[:i]
		}
		if sep == flatListSep {
			// sops reads a malformed index as 0; the list check then
			// fails unless it really is the first element.
			n, err := strconv.Atoi(part)
			if err != nil {
				n = 0
			}
			steps = append(steps, flatStep{index: n, isIndex: true})
		} else {
			steps = append(steps, flatStep{key: part})
		}
		if i < 0 {
			return steps
		}
		key, sep = key[i+len(next):], next
	}
}

// nextFlatSep finds the first separator in key.
func nextFlatSep(key string) (int, string) {
	m, l := strings.Index(key, flatMapSep), strings.Index(key, flatListSep)
	switch {
	case m < 0 && l < 0:
		return -1, ""
	case l < 0 || (m >= 0 && m < l):
		return m, flatMapSep
	}
	return l, flatListSep
}

// flatNode collects the values under one flattened key prefix.
type flatNode struct {
	value   any
	set     bool
	keys    []string // in first-seen order
	byKey   map[string]*flatNode
	byIndex map[int]*flatNode
}

// child returns, creating it if needed, the node one step further.
func (n *flatNode) child(s flatStep) *flatNode {
	if s.isIndex {
		if n.byIndex == nil {
			n.byIndex = map[int]*flatNode{}
		}
		c, ok := n.byIndex[s.index]
		if !ok {
			c = &flatNode{}
			n.byIndex[s.index] = c
		}
		return c
	}
	if n.byKey == nil {
		n.byKey = map[string]*flatNode{}
	}
	c, ok := n.byKey[s.key]
	if !ok {
		c = &flatNode{}
		n.byKey[s.key] = c
		n.keys = append(n.keys, s.key)
	}
	return c
}

// build turns the node into a value, mapping or sequence.
func (n *flatNode) build() (any, error) {
	kinds := 0
	for _, has := range []bool{n.set, len(n.byKey) > 0, len(n.byIndex) > 0} {
		if has {
			kinds++
		}
	}
	switch {
	case kinds > 1:
		return nil, errors.New("a key is both a value and a mapping or list")
	case n.set:
		return n.value, nil
	case len(n.byIndex) > 0:
		list := make(sequence, len(n.byIndex))
		for i, c := range n.byIndex {
			if i < 0 || i >= len(list) {
				return nil, errors.New("incomplete list")
			}
			v, err := c.build()
			if err != nil {
				return nil, err
			}
			list[i] = v
		}
		return list, nil
	}
	m := make(mapping, 0, len(n.keys))
	for _, k := range n.keys {
		v, err := n.byKey[k].build()
		if err != nil {
			return nil, err
		}
		m = append(m, entry{key: k, value: v})
	}
	return m, nil
}
