package secrets

import (
	"crypto/sha256"
	"crypto/sha512"
	"fmt"
	"hash"
	"regexp"
	"strings"
)

// The tree mirrors SOPS's in-memory document, because the MAC and the
// choice of what is encrypted are defined over it, not over the file's
// bytes. A value is one of: string, int, float64, bool, time.Time, []byte,
// nil, comment, mapping or sequence.
type (
	// mapping is an ordered map. Comments sit between its entries as
	// entries whose key is a comment.
	mapping []entry
	// entry is one key of a mapping, or a comment line when key is a
	// comment (then value is nil).
	entry struct {
		key   any // string or comment
		value any
	}
	// sequence is a list; comments are elements of it.
	sequence []any
	// comment is a comment line without its '#'. SOPS encrypts comments
	// too, and comments can decide whether the next value is encrypted.
	comment struct {
		text   string
		inline bool // written after a value on the same line (YAML)
	}
)

// get returns the value of key in m, ignoring comments. Of duplicate keys,
// which only JSON lets through, the last counts, as in sops's metadata.
func (m mapping) get(key string) (any, bool) {
	for i := len(m) - 1; i >= 0; i-- {
		if k, ok := m[i].key.(string); ok && k == key {
			return m[i].value, true
		}
	}
	return nil, false
}

// walker decrypts a tree in place and hashes it for the MAC, visiting
// values in the order SOPS does.
type walker struct {
	key              []byte
	rule             rule
	macOnlyEncrypted bool
	mac              hash.Hash
	// found are the plaintexts of the values that were encrypted, in walk
	// order: what output must never show (see Redactor).
	found []string
}

// decryptTree decrypts every encrypted value and comment of branches in
// place and returns the MAC of the result as SOPS writes it (upper-case hex
// of SHA-512), and the walker, which knows what was encrypted.
func decryptTree(branches []mapping, key []byte, meta *metadata) (string, *walker, error) {
	w := &walker{key: key, rule: meta.rule, macOnlyEncrypted: meta.macOnlyEncrypted, mac: sha512.New()}
	if w.macOnlyEncrypted {
		// A known start, so that a MAC over only the encrypted values never
		// equals the MAC over all values. SOPS defines it as SHA-256("sops").
		start := sha256.Sum256([]byte("sops"))
		w.mac.Write(start[:])
	}
	for _, b := range branches {
		if err := w.mapping(b, scope{}); err != nil {
			return "", nil, err
		}
	}
	return fmt.Sprintf("%X", w.mac.Sum(nil)), w, nil
}

// hashes reports whether a value enters the MAC.
func (w *walker) hashes(encrypted bool) bool {
	return encrypted || !w.macOnlyEncrypted
}

// scope is what the encryption rule needs to know about where a value sits:
// its key path and the comments above it. SOPS keeps the whole path and a
// stack of comment lists and searches them for every value; keeping only
// "did anything match so far" gives the same answers in linear time.
type scope struct {
	path []string
	// keyMatched: some key on the path matches the rule's suffix or regex.
	keyMatched bool
	// commentMatched: some comment in an enclosing level (above a parent
	// key or list) matches the rule's comment regex.
	commentMatched bool
}

// under returns the scope of the value of key.
func (s scope) under(key string, r rule, levelComments bool) scope {
	return scope{
		// A fresh slice, so sibling paths never share a backing array.
		path:           append(s.path[:len(s.path):len(s.path)], key),
		keyMatched:     s.keyMatched || r.matchesKey(key),
		commentMatched: s.commentMatched || levelComments,
	}
}

// mapping walks the entries of m. Comments seen in m since the last key
// count for the next key's value; sops clears them after every key.
func (w *walker) mapping(m mapping, s scope) error {
	levelComments := false // a comment in this level, since the last key, matched
	for i, e := range m {
		if c, ok := e.key.(comment); ok {
			selfMatches := w.rule.matchesComment(c.text)
			dec, err := w.comment(c, s, levelComments, selfMatches)
			if err != nil {
				return err
			}
			m[i].key = dec
			levelComments = levelComments || selfMatches
			continue
		}
		key, ok := e.key.(string)
		if !ok {
			return fmt.Errorf("key path %s: non-string key", keyPath(s.path))
		}
		v, err := w.value(e.value, s.under(key, w.rule, levelComments))
		if err != nil {
			return err
		}
		if _, isComment := v.(comment); isComment {
			return fmt.Errorf("key path %s: a value decrypted to a comment", keyPath(append(s.path, key)))
		}
		m[i].value = v
		levelComments = false
	}
	return nil
}

// sequence walks the elements of q, which share the path of q itself.
func (w *walker) sequence(q sequence, s scope) error {
	levelComments := false
	for i, v := range q {
		if c, ok := v.(comment); ok {
			selfMatches := w.rule.matchesComment(c.text)
			dec, err := w.comment(c, s, levelComments, selfMatches)
			if err != nil {
				return err
			}
			q[i] = dec
			levelComments = levelComments || selfMatches
			continue
		}
		inner := scope{path: s.path, keyMatched: s.keyMatched, commentMatched: s.commentMatched || levelComments}
		dec, err := w.value(v, inner)
		if err != nil {
			return err
		}
		q[i] = dec
		levelComments = false
	}
	return nil
}

// value decrypts and hashes one value, or walks into it.
func (w *walker) value(v any, s scope) (any, error) {
	switch v := v.(type) {
	case mapping:
		return v, w.mapping(v, s)
	case sequence:
		return v, w.sequence(v, s)
	case nil:
		// sops neither encrypts nor hashes nulls.
		return nil, nil
	}
	encrypted := w.rule.encrypts(s.keyMatched, s.commentMatched)
	out := v
	if encrypted {
		text, ok := v.(string)
		if !ok {
			return nil, fmt.Errorf("key path %s: value should be encrypted but is a cleartext %s", keyPath(s.path), typeName(v))
		}
		var err error
		out, err = decryptValue(text, w.key, pathString(s.path))
		if err != nil {
			return nil, fmt.Errorf("key path %s: decrypt: %w", keyPath(s.path), err)
		}
		if _, isComment := out.(comment); !isComment {
			w.found = append(w.found, envString(out))
		}
	}
	if w.hashes(encrypted) {
		if _, isComment := out.(comment); !isComment {
			b, err := macBytes(out)
			if err != nil {
				return nil, fmt.Errorf("key path %s: %w", keyPath(s.path), err)
			}
			w.mac.Write(b)
		}
	}
	return out, nil
}

// comment decrypts a comment line if the rule says it is encrypted.
// levelComments is whether an earlier comment of the same level matched;
// selfMatches whether c itself matches the comment regex.
func (w *walker) comment(c comment, s scope, levelComments, selfMatches bool) (comment, error) {
	// An unencrypted_comment_regex covers the comment that matches it, an
	// encrypted_comment_regex only what follows it.
	matched := s.commentMatched || levelComments
	if w.rule.kind == unencryptedCommentRegex {
		matched = matched || selfMatches
	}
	if !w.rule.encrypts(s.keyMatched, matched) {
		return c, nil
	}
	v, err := decryptValue(c.text, w.key, pathString(s.path))
	if err != nil {
		// sops keeps comments it cannot decrypt: files written by older
		// versions of sops have cleartext comments. Comments are not in
		// the MAC, so nothing is lost by keeping it.
		return c, nil
	}
	switch v := v.(type) {
	case comment:
		// sops drops the inline mark of the comments it decrypts, so an
		// inline comment comes out on its own line; do the same, so the
		// output is the one "sops decrypt" prints.
		return v, nil
	case string:
		// Only a hand-made file has a comment of type str; sops then puts
		// its text in the MAC.
		if w.hashes(true) {
			w.mac.Write([]byte(v))
		}
		return comment{text: v, inline: c.inline}, nil
	}
	return c, fmt.Errorf("key path %s: a comment decrypted to a %s", keyPath(s.path), typeName(v))
}

// pathString is the additional data a value is encrypted with: its keys
// joined and ended with ':' ("db:password:"; ":" for a top-level comment).
func pathString(path []string) string {
	return strings.Join(path, ":") + ":"
}

// keyPath names a value's place in errors: "db:password".
func keyPath(path []string) string {
	if len(path) == 0 {
		return "(top level)"
	}
	return strings.Join(path, ":")
}

// ruleKind names which of sops's mutually exclusive encryption rules a file
// uses.
type ruleKind int

const (
	unencryptedSuffix ruleKind = iota
	encryptedSuffix
	unencryptedRegex
	encryptedRegex
	unencryptedCommentRegex
	encryptedCommentRegex
)

// rule decides which values of a file are encrypted. A file has exactly one
// (sops refuses more, and defaults to unencrypted_suffix "_unencrypted").
type rule struct {
	kind    ruleKind
	suffix  string
	pattern *regexp.Regexp // nil when the file's regex does not compile: sops then never matches
}

// matchesKey reports whether a key on a value's path triggers a key rule.
func (r rule) matchesKey(key string) bool {
	switch r.kind {
	case unencryptedSuffix, encryptedSuffix:
		return strings.HasSuffix(key, r.suffix)
	case unencryptedRegex, encryptedRegex:
		return r.pattern != nil && r.pattern.MatchString(key)
	}
	return false
}

// matchesComment reports whether a comment triggers a comment rule.
func (r rule) matchesComment(text string) bool {
	switch r.kind {
	case unencryptedCommentRegex, encryptedCommentRegex:
		return r.pattern != nil && r.pattern.MatchString(text)
	}
	return false
}

// encrypts decides from what matched around a value whether it is encrypted.
func (r rule) encrypts(keyMatched, commentMatched bool) bool {
	switch r.kind {
	case unencryptedSuffix, unencryptedRegex:
		return !keyMatched
	case encryptedSuffix, encryptedRegex:
		return keyMatched
	case unencryptedCommentRegex:
		return !commentMatched
	case encryptedCommentRegex:
		return commentMatched
	}
	return true
}
