package secrets

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
)

// Redacted replaces a decrypted value in what gitopsd records or logs.
const Redacted = "[redacted]"

// MinRedactLen is the shortest value a Redactor redacts, in bytes. A
// shorter one (a port, "true", a 4-digit PIN) is too likely to be any
// other word or number of a message: redacting it would garble every
// record, step note and log line that contains it, and it is guessed in
// seconds anyway. Values of 6 bytes and more, which is any password or
// token worth the name, are redacted.
const MinRedactLen = 6

// Redactor knows the values gitopsd decrypted, by stack, and takes them
// out of text before it is recorded or logged: hook, probe, verify and
// build output reaches step notes, deployment and stack errors, the log
// and notifications, and a container that prints its environment must not
// put its secrets there.
//
// The stack loader adds each stack's values as it decrypts them; the
// store, the log (Handler) and the notifier redact with the union of all
// stacks' values, as a line about one stack may quote another's output.
// Values are never forgotten while the daemon runs: a container of an
// older revision may still print a secret the repository has since
// rotated. After a restart only the values of the revisions loaded since
// are known.
//
// Besides a value as it is, a Redactor catches the forms output gives it:
// each of its lines, its whitespace collapsed (a health probe's output is
// recorded on one line), escaped as JSON and Go quote it, and a prefix of
// it cut off by "..." where an output was shortened. A value longer than
// 4 KiB is caught only line by line (see maxFormLen), and a piece of a
// value that is none of these forms is not caught.
//
// A zero Redactor knows no value yet; a nil one redacts nothing and
// learns nothing. Methods are safe for concurrent use.
type Redactor struct {
	mu      sync.Mutex
	byStack map[string]map[string]bool // stack -> forms of its values
	// current is the state Redact reads without a lock, rebuilt on Add.
	current atomic.Pointer[redaction]
}

// redaction is what Redact works with: the forms of every value, longest
// first, and a replacer over them.
type redaction struct {
	forms    []string
	replacer *strings.Replacer
}

// NewRedactor returns a Redactor that knows no value yet.
func NewRedactor() *Redactor { return &Redactor{} }

// Add makes values, decrypted for stack, known. Values shorter than
// MinRedactLen are left out.
func (r *Redactor) Add(stack string, values ...string) {
	if r == nil || len(values) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.byStack == nil {
		r.byStack = map[string]map[string]bool{}
	}
	known := r.byStack[stack]
	if known == nil {
		known = map[string]bool{}
		r.byStack[stack] = known
	}
	grew := false
	for _, v := range values {
		for _, f := range forms(v) {
			if !known[f] {
				known[f], grew = true, true
			}
		}
	}
	if grew {
		r.rebuild()
	}
}

// rebuild makes the redaction of every stack's forms; r.mu is held.
func (r *Redactor) rebuild() {
	all := map[string]bool{}
	for _, known := range r.byStack {
		for f := range known {
			all[f] = true
		}
	}
	red := &redaction{}
	for f := range all {
		red.forms = append(red.forms, f)
	}
	// Longest first: a value that contains another is redacted whole, not
	// around the shorter one (strings.Replacer tries its pairs in order).
	slices.SortFunc(red.forms, func(a, b string) int {
		if len(a) != len(b) {
			return len(b) - len(a)
		}
		return strings.Compare(a, b)
	})
	pairs := make([]string, 0, 2*len(red.forms))
	for _, f := range red.forms {
		pairs = append(pairs, f, Redacted)
	}
	red.replacer = strings.NewReplacer(pairs...)
	r.current.Store(red)
}

// maxFormLen bounds the forms a Redactor matches. What gitopsd records of
// an output is its tail, 2 KiB at most, so a longer form could never be
// seen whole there; a long value (a certificate, a key file) is still
// caught line by line. The bound also keeps the replacer small whatever
// size of secret file a repository decrypts.
const maxFormLen = 4096

// forms are the ways output may show v, each at least MinRedactLen long
// and at most maxFormLen.
func forms(v string) []string {
	var out []string
	add := func(f string) {
		if len(f) >= MinRedactLen && len(f) <= maxFormLen && !slices.Contains(out, f) {
			out = append(out, f)
		}
	}
	add(v)
	add(strings.TrimSpace(v))
	for _, line := range strings.Split(v, "\n") {
		add(strings.TrimSpace(strings.TrimSuffix(line, "\r")))
	}
	add(strings.Join(strings.Fields(v), " "))
	if b, err := json.Marshal(v); err == nil {
		add(string(b[1 : len(b)-1]))
	}
	q := strconv.Quote(v)
	add(q[1 : len(q)-1])
	return out
}

// Redact returns s with every known value replaced by Redacted.
func (r *Redactor) Redact(s string) string {
	if r == nil || s == "" {
		return s
	}
	red := r.current.Load()
	if red == nil {
		return s
	}
	s = red.replacer.Replace(s)
	if strings.Contains(s, "...") {
		s = red.cutPrefixes(s)
	}
	return s
}

// cutPrefixes redacts a value's prefix (MinRedactLen or longer) that ends
// where "..." marks an output shortened: the rest of the value was cut,
// and the prefix alone may give most of it away. Only the first
// maxMarkers marks are looked at, each over the cutWindow bytes before
// it, so the work stays linear in what a container may print.
func (red *redaction) cutPrefixes(s string) string {
	var b strings.Builder
	rest := s
	for marks := 0; ; marks++ {
		i := strings.Index(rest, "...")
		if i < 0 || marks == maxMarkers {
			b.WriteString(rest)
			return b.String()
		}
		head := rest[:i]
		window := head[max(0, len(head)-cutWindow):]
		for _, f := range red.forms {
			if n := prefixAtEnd(window, f[:min(len(f), cutWindow)]); n >= MinRedactLen {
				head = head[:len(head)-n] + Redacted
				break
			}
		}
		b.WriteString(head)
		b.WriteString("...")
		rest = rest[i+3:]
	}
}

// What cutPrefixes looks at: health probe output is cut at 200 bytes.
const (
	maxMarkers = 16
	cutWindow  = 256
)

// prefixAtEnd is the length of the longest prefix of p that s ends with,
// found in one pass over s (Knuth-Morris-Pratt).
func prefixAtEnd(s, p string) int {
	if p == "" {
		return 0
	}
	fail := make([]int, len(p)) // fail[i]: longest proper border of p[:i+1]
	for i, k := 1, 0; i < len(p); i++ {
		for k > 0 && p[i] != p[k] {
			k = fail[k-1]
		}
		if p[i] == p[k] {
			k++
		}
		fail[i] = k
	}
	q := 0
	for i := 0; i < len(s); i++ {
		for q > 0 && (q == len(p) || s[i] != p[q]) {
			q = fail[q-1]
		}
		if s[i] == p[q] {
			q++
		}
	}
	return q
}

// Handler wraps h so that every message and attribute it logs is
// redacted first: strings, errors and anything else as it would be
// printed, in groups too, and the attributes of With, with the values
// known when the record is logged.
func (r *Redactor) Handler(h slog.Handler) slog.Handler {
	return &redactHandler{redact: r.Redact, inner: h}
}

// redactHandler is a log handler that passes every string a record would
// print through redact: the Redactor's values, or the credentials in URLs
// (URLHandler).
type redactHandler struct {
	redact func(string) string
	inner  slog.Handler
	// with are the groups and attributes of WithGroup and WithAttrs,
	// oldest first. They are kept, not handed to inner, so that they are
	// redacted with the values known when a record is logged, not those
	// known when a logger was made.
	with []groupOrAttrs
}

type groupOrAttrs struct {
	group string // a WithGroup, or else
	attrs []slog.Attr
}

func (h *redactHandler) Enabled(ctx context.Context, l slog.Level) bool {
	return h.inner.Enabled(ctx, l)
}

func (h *redactHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	if len(attrs) == 0 {
		return h
	}
	return h.plus(groupOrAttrs{attrs: attrs})
}

func (h *redactHandler) WithGroup(name string) slog.Handler {
	if name == "" {
		return h
	}
	return h.plus(groupOrAttrs{group: name})
}

func (h *redactHandler) plus(g groupOrAttrs) *redactHandler {
	return &redactHandler{redact: h.redact, inner: h.inner, with: append(slices.Clip(h.with), g)}
}

func (h *redactHandler) Handle(ctx context.Context, rec slog.Record) error {
	attrs := make([]slog.Attr, 0, rec.NumAttrs())
	rec.Attrs(func(a slog.Attr) bool {
		attrs = append(attrs, h.attr(a))
		return true
	})
	// Nest the record's attributes in the groups opened since the last
	// attributes, innermost last, as the inner handler would have.
	for i := len(h.with) - 1; i >= 0; i-- {
		g := h.with[i]
		if g.group != "" {
			if len(attrs) > 0 {
				attrs = []slog.Attr{{Key: g.group, Value: slog.GroupValue(attrs...)}}
			}
			continue
		}
		bound := make([]slog.Attr, 0, len(g.attrs)+len(attrs))
		for _, a := range g.attrs {
			bound = append(bound, h.attr(a))
		}
		attrs = append(bound, attrs...)
	}
	out := slog.NewRecord(rec.Time, rec.Level, h.redact(rec.Message), rec.PC)
	out.AddAttrs(attrs...)
	return h.inner.Handle(ctx, out)
}

// attr is a with every string it would print redacted.
func (h *redactHandler) attr(a slog.Attr) slog.Attr {
	v := a.Value.Resolve()
	switch v.Kind() {
	case slog.KindString:
		return slog.String(a.Key, h.redact(v.String()))
	case slog.KindGroup:
		group := v.Group()
		out := make([]slog.Attr, len(group))
		for i, g := range group {
			out[i] = h.attr(g)
		}
		return slog.Attr{Key: a.Key, Value: slog.GroupValue(out...)}
	case slog.KindAny:
		var text string
		if err, ok := v.Any().(error); ok {
			text = err.Error()
		} else {
			text = fmt.Sprint(v.Any())
		}
		if red := h.redact(text); red != text {
			return slog.String(a.Key, red)
		}
	}
	return slog.Attr{Key: a.Key, Value: v}
}
