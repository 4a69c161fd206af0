package stack

import (
	"context"
	"fmt"
	"path"

	"filippo.io/age"
	"github.com/compose-spec/compose-go/v2/types"

	"github.com/gitopsd/gitopsd/internal/policy"
	"github.com/gitopsd/gitopsd/internal/secrets"
)

// Host is what a stack's targets and interpolation see of this host.
type Host struct {
	Name   string
	Labels map[string]string
	// Policy is what a stack may ask of this host; nil is policy.Default.
	Policy *policy.Policy
	// Identities decrypt the SOPS-encrypted files of the stacks that run
	// here; none: such a stack is Invalid.
	Identities []age.Identity
	// SkipSecrets leaves encrypted env files out, unread, instead of
	// asking for a key: for judging a repository offline without its keys.
	SkipSecrets bool
	// Redactor learns every value decrypted for a stack, as it is
	// decrypted, so that no output recorded or logged shows it (nil:
	// nobody records output, as in validate).
	Redactor *secrets.Redactor
}

func (h Host) policy() policy.Policy {
	if h.Policy == nil {
		return policy.Default()
	}
	return *h.Policy
}

// Stack is one folder stacks/<Name>/ of a checked-out revision, loaded and
// normalized the way `docker compose -p <Name> up` would see it.
type Stack struct {
	Name    string         // compose project name == folder name
	Dir     string         // absolute path of stacks/<Name> in the checkout
	Files   []string       // absolute paths of the compose files used, in merge order
	Project *types.Project // normalized as the compose CLI normalizes it; nil only inside LoadAll, for a stack it passes over
	Options Options        // the parsed x-gitopsd extension
	// Profiles are the active profiles: x-gitopsd.profiles, else
	// COMPOSE_PROFILES of the stack's .env; none when neither is set. The
	// services of other profiles are in Project.DisabledServices.
	Profiles []string
}

// Options is the top-level x-gitopsd extension of a stack.
type Options struct {
	Targets Targets
	Drift   DriftPolicy // default DriftHeal
	// Profiles are the profiles to activate, as `docker compose --profile`
	// would; nil when x-gitopsd has no profiles key, empty to activate
	// none whatever .env says.
	Profiles []string
	// Backup and later keys are parsed by their own packages from Raw.
	Raw map[string]any
}

// DriftPolicy says what to do when running state drifts from Git.
type DriftPolicy string

const (
	DriftHeal   DriftPolicy = "heal"
	DriftReport DriftPolicy = "report"
)

// Targets selects the hosts a stack runs on. Empty means every host.
type Targets struct {
	Hosts  []string          // shell-style globs matched against Host.Name
	Labels map[string]string // every pair must equal the host's label
}

// Error is a load error that a human can act on: it names the stack, the
// file (relative to the repository root) and, where known, the line.
type Error struct {
	Stack string
	File  string // e.g. "stacks/web/compose.yaml"; empty if not file-specific
	Line  int    // 0 if unknown
	Msg   string
}

func (e *Error) Error() string {
	switch {
	case e.File != "" && e.Line > 0:
		return fmt.Sprintf("%s:%d: %s", e.File, e.Line, e.Msg)
	case e.File != "":
		return fmt.Sprintf("%s: %s", e.File, e.Msg)
	default:
		return fmt.Sprintf("stack %s: %s", e.Stack, e.Msg)
	}
}

// Result is the desired state of a whole revision for one host.
type Result struct {
	Stacks     []*Stack         // valid stacks that target this host, sorted by name
	Invalid    map[string]error // stack name -> why it did not load (*Error where possible)
	Untargeted []string         // valid stacks that do not target this host
	// Err says the revision's stacks/ folder could not be read at all: the
	// caller must not take that as "every stack was removed".
	Err error
}

// LoadAll loads every stacks/<name>/ folder of the checkout at repoDir.
// One broken stack never prevents the others from loading.
//
// A stack whose compose files say, as written, that it runs on other hosts
// is not loaded further: this host reads none of its other files.
func LoadAll(ctx context.Context, repoDir string, host Host) Result {
	return loadAll(ctx, repoDir, host, loadForAll)
}

func loadAll(ctx context.Context, repoDir string, host Host, load func(context.Context, string, string, Host) (*Stack, error)) Result {
	res := Result{Invalid: map[string]error{}}
	names, err := Discover(repoDir)
	if err != nil {
		res.Err = err
		return res
	}
	for _, name := range names {
		st, err := load(ctx, repoDir, name, host)
		switch {
		case err != nil:
			res.Invalid[name] = err
		case !st.Options.Targets.Match(host):
			res.Untargeted = append(res.Untargeted, name)
		default:
			res.Stacks = append(res.Stacks, st)
		}
	}
	return res
}

// Match says whether a stack with these targets runs on host.
func (t Targets) Match(host Host) bool {
	if len(t.Hosts) > 0 {
		matched := false
		for _, pattern := range t.Hosts {
			if ok, _ := path.Match(pattern, host.Name); ok {
				matched = true
				break
			}
		}
		if !matched {
			return false
		}
	}
	for k, v := range t.Labels {
		if got, ok := host.Labels[k]; !ok || got != v {
			return false
		}
	}
	return true
}

// matchPattern checks a host pattern's syntax.
func matchPattern(pattern string) (bool, error) {
	return path.Match(pattern, "")
}
