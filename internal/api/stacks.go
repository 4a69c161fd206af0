package api

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"sort"
	"strings"
)

// StackNamer is a Backend that knows which stack names exist: those of
// the current head for this host, and those in its record (a stack removed
// from the repository is still known to history). The server refuses a
// request naming any other stack, so a misspelled name is an error, not an
// empty answer or a queued no-op. A sync is the exception: the backend
// judges its stack after fetching, since it may be new.
type StackNamer interface {
	StackNames(ctx context.Context) ([]string, error)
}

// Versioner is a Backend that tells its version.
type Versioner interface {
	Version() string
}

// UnknownStackError is the answer to a request naming a stack the daemon
// does not know; Suggestions are the nearest known names.
type UnknownStackError struct {
	Stack       string
	Suggestions []string
	Known       int // how many stacks the daemon knows
}

func (e *UnknownStackError) Error() string {
	msg := fmt.Sprintf("unknown stack %q", e.Stack)
	switch {
	case len(e.Suggestions) > 0:
		msg += "; did you mean " + strings.Join(e.Suggestions, ", ") + "?"
	case e.Known == 0:
		msg += "; this host has no stacks yet (see gitopsd status)"
	default:
		msg += "; gitopsd status lists the known stacks"
	}
	return msg
}

func (e *UnknownStackError) Unwrap() error { return ErrNotFound }

// CheckStack returns an *UnknownStackError when name is not among known.
func CheckStack(name string, known []string) error {
	for _, k := range known {
		if k == name {
			return nil
		}
	}
	return &UnknownStackError{Stack: name, Suggestions: Suggest(name, known), Known: len(known)}
}

// Suggest returns the known names nearest to name, nearest first: those
// within an edit distance (a swap of two letters counts as one edit) of 1
// for short names, 2 from 6 letters, a third of the length beyond; and
// those that start with it or that it starts with. With few known names
// and no near one, it names them all, so the user sees what there is.
func Suggest(name string, known []string) []string {
	type cand struct {
		name string
		d    int
	}
	limit := 1
	if len(name) >= 6 {
		limit = max(2, len(name)/3)
	}
	lname := strings.ToLower(name)
	var cs []cand
	for _, k := range known {
		lk := strings.ToLower(k)
		d := editDistance(lname, lk)
		if d <= limit || (len(name) >= 3 && (strings.HasPrefix(lk, lname) || strings.HasPrefix(lname, lk))) {
			cs = append(cs, cand{k, d})
		}
	}
	if len(cs) == 0 && len(known) <= 5 {
		for _, k := range known {
			cs = append(cs, cand{k, editDistance(lname, strings.ToLower(k))})
		}
	}
	sort.SliceStable(cs, func(i, j int) bool {
		if cs[i].d != cs[j].d {
			return cs[i].d < cs[j].d
		}
		return cs[i].name < cs[j].name
	})
	out := []string{}
	for i, c := range cs {
		if i == 5 {
			break
		}
		out = append(out, c.name)
	}
	return out
}

// editDistance is the optimal string alignment distance: insertions,
// deletions, substitutions and swaps of neighbours, one edit each.
func editDistance(a, b string) int {
	ra, rb := []rune(a), []rune(b)
	d := make([][]int, len(ra)+1)
	for i := range d {
		d[i] = make([]int, len(rb)+1)
		d[i][0] = i
	}
	for j := range d[0] {
		d[0][j] = j
	}
	for i := 1; i <= len(ra); i++ {
		for j := 1; j <= len(rb); j++ {
			cost := 1
			if ra[i-1] == rb[j-1] {
				cost = 0
			}
			d[i][j] = min(d[i-1][j]+1, d[i][j-1]+1, d[i-1][j-1]+cost)
			if i > 1 && j > 1 && ra[i-1] == rb[j-2] && ra[i-2] == rb[j-1] {
				d[i][j] = min(d[i][j], d[i-2][j-2]+1)
			}
		}
	}
	return d[len(ra)][len(rb)]
}

// knownStacks refuses, before any handler runs, a request whose stack
// parameter names a stack the backend does not know: every command that
// names a stack gets the same answer (404, the name and the nearest ones).
func knownStacks(b Backend, next http.Handler) http.Handler {
	namer, ok := b.(StackNamer)
	if !ok {
		return next
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		name := r.URL.Query().Get("stack")
		// A sync may name a stack of a commit not fetched yet: the
		// backend fetches before it judges the name.
		if name == "" || r.URL.Path == "/v1/stacks" || r.URL.Path == "/v1/sync" {
			next.ServeHTTP(w, r)
			return
		}
		known, err := namer.StackNames(r.Context())
		if err == nil {
			err = CheckStack(name, known)
		}
		if err != nil {
			code := http.StatusInternalServerError
			if errors.Is(err, ErrNotFound) {
				code = http.StatusNotFound
			}
			writeError(w, code, err.Error())
			return
		}
		next.ServeHTTP(w, r)
	})
}

// HeldError says that stacks a sync covered stay held: the revision they
// are to run failed its health gate, and only `sync --retry` (or a new
// commit to the stack) tries it again; or the fleet's rollout holds it
// (ByRollout), and `sync --skip-wave` applies it. The sync itself was done
// (or queued).
type HeldError struct {
	Stacks []HeldStack
	// Queued: the sync was only queued, so this is a note, not a failure
	// (a new commit to the stack may still release it).
	Queued bool
}

func (e *HeldError) Error() string {
	var parts []string
	for _, s := range e.Stacks {
		if s.ByRollout {
			parts = append(parts, fmt.Sprintf("stack %s is %s; `gitopsd sync %s --skip-wave` applies it now", s.Stack, s.Reason, s.Stack))
			continue
		}
		why := s.Reason // the record's error names the revision and the gate
		if why == "" {
			why = fmt.Sprintf("revision %s failed to deploy", shortRev(s.Revision))
		}
		parts = append(parts, fmt.Sprintf("stack %s is held: %s; `gitopsd sync %s --retry` tries it again", s.Stack, why, s.Stack))
	}
	return strings.Join(parts, "\n")
}

func shortRev(rev string) string {
	if len(rev) > 12 {
		return rev[:12]
	}
	return rev
}
