// Package drift owns drift: the differences between what a stack's applied
// revision declares and what runs on the engine, seen through Docker's
// event stream within a second and by periodic comparisons.
//
// It does not decide what a stack should look like: the sync package's
// planner does. A stack that runs its revision and whose plan is not empty
// has drifted, and Classify names each action of that plan as a drift:
//
//	missing   a container (or network, volume) the revision declares is gone
//	stopped   a container is stopped or paused
//	modified  a container differs from its spec (recreated or changed by hand)
//	extra     a container carries the stack's project label but the revision
//	          does not declare it (made by hand, or a replica too many)
//	image     the tag a service names now points to another image
//	behind    the branch is ahead of what the stack runs (pinned, held after a
//	          failed gate, or invalid); the daemon reports it, nothing heals it
//
// Watch follows the events; Controller decides what to do about what a look
// finds (record it, heal or only report it per the stack's policy, close
// what went away), and the daemon's loop runs it; a container of a steady
// stack stopped by hand is started at its event without a look
// (Controller.QuickHeal, quick.go), and the look that follows records it; Backoff spaces the heals
// of a service that keeps drifting, so a crash loop is not fed by a tight
// restart loop. The controller reaches the engine and the record only
// through the small interfaces it declares (Reconciler, Store).
package drift

import (
	"fmt"
	"sort"
	"strings"

	"github.com/gitopsd/gitopsd/internal/sync"
)

// Kind is a kind of drift.
type Kind string

const (
	Missing  Kind = "missing"
	Stopped  Kind = "stopped"
	Modified Kind = "modified"
	Extra    Kind = "extra"
	Image    Kind = "image"
	Behind   Kind = "behind"
)

// How a drift was closed.
const (
	ClosedHealed     = "healed"     // gitopsd put it back
	ClosedResolved   = "resolved"   // it went away without gitopsd: by hand, or the container's restart policy
	ClosedSuperseded = "superseded" // a deployment of another revision, or the stack's removal, replaced it
)

// Finding is one drift seen now.
type Finding struct {
	Stack     string
	Service   string // "" for a stack-wide drift
	Container string // container name; "network:<key>" or "volume:<key>" for those; "" for service- or stack-wide
	Kind      Kind
	Detail    string
}

// Key identifies a drift across checks: the same container drifting the
// same way is one drift, however often it is seen.
func (f Finding) Key() string {
	return f.Stack + "\x00" + f.Service + "\x00" + f.Container + "\x00" + string(f.Kind)
}

// Classify names the drifts of a plan made for the revision a stack runs.
// Restarts of dependents follow from a recreate and are no drift of their
// own, nor is a network that nothing uses any more. It is a pure function.
func Classify(plan sync.Plan) []Finding {
	var out []Finding
	for _, a := range plan.Actions {
		f := Finding{Stack: plan.Stack, Service: a.Service, Container: a.Name}
		switch a.Kind {
		case sync.ActCreate:
			f.Kind, f.Detail = Missing, "container "+a.Name+" is gone"
		case sync.ActCreateNetwork:
			f.Kind, f.Container, f.Detail = Missing, "network:"+a.Key, "network "+a.Key+" is gone"
		case sync.ActCreateVolume:
			f.Kind, f.Container, f.Detail = Missing, "volume:"+a.Key, "volume "+a.Key+" is gone"
		case sync.ActStart, sync.ActUnpause:
			f.Kind, f.Detail = Stopped, strings.Join(a.Reasons, ", ")
		case sync.ActRecreate:
			f.Kind, f.Detail = Modified, "differs in "+strings.Join(a.Reasons, ", ")
			if onlyImage(a.Reasons) {
				f.Kind, f.Detail = Image, "the image tag now points to another image"
			}
		case sync.ActRemove:
			f.Kind, f.Detail = Extra, "not declared by the revision ("+strings.Join(a.Reasons, ", ")+")"
		default:
			continue
		}
		out = append(out, f)
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Key() < out[j].Key() })
	return out
}

// onlyImage: the container is as specified but for the image it runs.
func onlyImage(reasons []string) bool {
	if len(reasons) == 0 {
		return false
	}
	for _, r := range reasons {
		if r != "image changed" && r != "image" {
			return false
		}
	}
	return true
}

// String is a finding as a log line or a notification shows it.
func (f Finding) String() string {
	where := f.Stack
	if f.Service != "" {
		where += "/" + f.Service
	}
	if f.Container != "" {
		where += " (" + f.Container + ")"
	}
	return fmt.Sprintf("%s %s: %s", f.Kind, where, f.Detail)
}
