package stack

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/gitopsd/gitopsd/internal/policy"
	"github.com/gitopsd/gitopsd/internal/stack/vocab"
)

// checkCreatable refuses the service keys gitopsd cannot honour
// (vocab.CannotCreate), so the stack is Invalid at load, naming the file
// and line, instead of run without them.
func (l *locator) checkCreatable(project *types.Project) error {
	for _, name := range project.ServiceNames() {
		if keys := vocab.CannotCreate(project.Services[name]); len(keys) > 0 {
			return l.atPath(fmt.Sprintf("services.%s.%s", name, keys[0]), "gitopsd cannot create this yet (see the README's list of compose keys)")
		}
	}
	return nil
}

// checkPullPolicies refuses a pull_policy the compose schema lets through
// but gitopsd cannot honour (refresh, a malformed every_), so the stack is
// Invalid at load, naming the file and line, instead of Failed at its
// first deployment.
func (l *locator) checkPullPolicies(project *types.Project) error {
	for _, name := range project.ServiceNames() {
		if _, err := vocab.ParsePullPolicy(project.Services[name].PullPolicy); err != nil {
			return l.atPath(fmt.Sprintf("services.%s.pull_policy", name), err.Error())
		}
	}
	return nil
}

// checkBuilds refuses the build: sections gitopsd cannot build, so such a
// stack is Invalid with the file and line (and `gitopsd validate` says so
// offline) instead of failing at its first deployment: keys only BuildKit
// honours (gitopsd builds with the engine's classic builder, whose API has
// no session for secrets or ssh), remote contexts, and a context or
// Dockerfile outside the repository.
func (l *locator) checkBuilds(project *types.Project) error {
	for _, name := range project.ServiceNames() {
		b := project.Services[name].Build
		if b == nil {
			continue
		}
		key := fmt.Sprintf("services.%s.build", name)
		if keys := buildKitOnly(b); len(keys) > 0 {
			return l.atPath(key+"."+keys[0], "needs BuildKit, and gitopsd builds with the engine's classic builder: build the image elsewhere and name it in image:")
		}
		if b.Context == "" || strings.Contains(b.Context, "://") || strings.HasPrefix(b.Context, "git@") {
			return l.atPath(key+".context", fmt.Sprintf("%q: only a folder of the repository can be built (commit the context next to the compose file)", b.Context))
		}
		if !policy.Within(l.repoDir, b.Context) {
			return l.atPath(key+".context", fmt.Sprintf("%s is outside the repository", l.shown(b.Context)))
		}
		if dockerfile := b.Dockerfile; b.DockerfileInline == "" && dockerfile != "" {
			if !filepath.IsAbs(dockerfile) {
				dockerfile = filepath.Join(b.Context, dockerfile) // the builder reads it from the context
			}
			if !policy.Within(l.repoDir, dockerfile) {
				return l.atPath(key+".dockerfile", fmt.Sprintf("%s is outside the repository", l.shown(dockerfile)))
			}
		}
	}
	return nil
}

// buildKitOnly names the keys of b that only BuildKit honours.
func buildKitOnly(b *types.BuildConfig) []string {
	var keys []string
	if len(b.Secrets) > 0 {
		keys = append(keys, "secrets")
	}
	if len(b.SSH) > 0 {
		keys = append(keys, "ssh")
	}
	if len(b.AdditionalContexts) > 0 {
		keys = append(keys, "additional_contexts")
	}
	if len(b.CacheTo) > 0 {
		keys = append(keys, "cache_to")
	}
	if len(b.Entitlements) > 0 {
		keys = append(keys, "entitlements")
	}
	if b.Privileged {
		keys = append(keys, "privileged")
	}
	return keys
}
