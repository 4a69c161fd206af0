package sync

import (
	"context"
	"fmt"
	gosync "sync"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/gitopsd/gitopsd/internal/engine"
	"github.com/gitopsd/gitopsd/internal/stack"
	"github.com/gitopsd/gitopsd/internal/store"
)

// serviceImages is the local ID of the image each service runs. Services
// that build come first, as compose builds every image before it creates
// a container: another service may run a built image by its name.
func (r *Reconciler) serviceImages(ctx context.Context, st *stack.Stack, revision string, dryRun bool) (map[string]string, error) {
	ids := map[string]string{}
	names := st.Project.ServiceNames()
	for _, builds := range []bool{true, false} {
		for _, name := range names {
			svc := st.Project.Services[name]
			if (svc.Build != nil) != builds {
				continue
			}
			id, err := r.serviceImage(ctx, st, svc, revision, dryRun)
			if err != nil {
				return nil, fmt.Errorf("service %s: %w", name, err)
			}
			ids[name] = id
		}
	}
	return ids, nil
}

// serviceImage is the local ID of the image svc runs: built from the
// checkout when it has a build: section (unless pull_policy: never, which
// takes the image as the host has it), else pulled per pull_policy.
func (r *Reconciler) serviceImage(ctx context.Context, st *stack.Stack, svc types.ServiceConfig, revision string, dryRun bool) (string, error) {
	if svc.Build != nil && svc.PullPolicy != types.PullPolicyNever {
		return r.builtImage(ctx, st, svc, revision, dryRun)
	}
	return r.image(ctx, ImageName(st.Name, svc), svc.PullPolicy, dryRun)
}

// image returns the local ID of ref, pulling it when pull_policy says so
// for what the context's pullScope resolves images for, once per scope.
// In a dry run a missing image is not an error: its ID is simply unknown.
func (r *Reconciler) image(ctx context.Context, ref, pullPolicy string, dryRun bool) (string, error) {
	if dryRun {
		id, err := r.Engine.EnsureImage(ctx, ref, "never")
		if err != nil {
			return "", nil
		}
		return id, nil
	}
	scope := pullScopeOf(ctx)
	if id, ok := scope.pinnedImage(ref); ok {
		// Containers are created by name, as compose creates them: the
		// name must name the pinned image again.
		if err := r.Engine.TagImage(ctx, id, ref); err != nil {
			return "", err
		}
		return id, nil
	}
	if id, ok := scope.resolved(ref, pullPolicy); ok {
		return id, nil
	}
	id, err := r.resolveImage(ctx, ref, pullPolicy, scope.mode)
	if err != nil {
		return "", err
	}
	scope.remember(ref, pullPolicy, id)
	return id, nil
}

// resolveImage makes ref available per pull_policy for mode. The periodic
// policies (daily, weekly, every_<duration>) go by the last pull the store
// recorded, so a restart does not pull everything again.
func (r *Reconciler) resolveImage(ctx context.Context, ref, pullPolicy string, mode engine.ImageMode) (string, error) {
	policy, err := engine.ParsePullPolicy(pullPolicy)
	if err != nil {
		return "", err
	}
	req := engine.ImageRequest{Ref: ref, Policy: policy, Mode: mode}
	if policy.Every > 0 {
		last, _, err := r.Store.LastPull(ctx, ref)
		if err != nil {
			return "", err
		}
		req.LastPulled = last.PulledAt
	}
	res, err := r.Engine.ResolveImage(ctx, req)
	if err != nil {
		return "", err
	}
	if res.PullErr != nil {
		r.Log.Warn("pull failed; the image on this host stands for the tag", "image", ref, "err", res.PullErr)
	}
	if res.Pulled {
		r.Log.Info("pulled image", "image", ref, "id", shortID(res.ID))
		at := now()
		if err := r.Store.RecordPull(ctx, store.Pull{Ref: ref, ImageID: res.ID, PulledAt: at}); err != nil {
			return "", err
		}
		if err := r.Store.NoteImage(ctx, res.ID, ref, store.ImagePulled, at); err != nil {
			return "", err
		}
	}
	return res.ID, nil
}

// pullScope is what one Desire knows about its images: what it resolves
// them for (a forward deploy, a poll's check, or a rollback or heal
// returning to what ran), and the images it resolved already, so services
// sharing an image pull it once. Callers put it in the context, which
// spares Desire's signature a flag only images care about.
type pullScope struct {
	mode   engine.ImageMode
	mu     gosync.Mutex
	ids    map[string]string // ref + " " + pull_policy -> image ID
	pinned map[string]string // ref -> the image ID to take, whatever the tag names
}

// pinImagesRunBy makes a rollback to revision take, for each image
// reference, the image that revision's own containers still run (the
// replicas a failed roll left in place or put back) rather than what the
// tag names now: a tag the failed revision's pull moved must not bring its
// image back with the rollback.
func (r *Reconciler) pinImagesRunBy(ctx context.Context, stackName, revision string) error {
	cs, err := r.Engine.Containers(ctx, stackName)
	if err != nil {
		return fmt.Errorf("find the images revision %s runs: %w", short(revision), err)
	}
	scope := pullScopeOf(ctx)
	scope.mu.Lock()
	defer scope.mu.Unlock()
	for _, c := range cs {
		if c.Labels[engine.LabelRevision] == revision && c.Image != "" && c.ImageID != "" {
			if scope.pinned == nil {
				scope.pinned = map[string]string{}
			}
			scope.pinned[c.Image] = c.ImageID
		}
	}
	return nil
}

func (s *pullScope) pinnedImage(ref string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.pinned[ref]
	return id, ok
}

type pullScopeKey struct{}

// withPullScope gives the Desire called with the returned context a fresh
// scope resolving images for mode.
func withPullScope(ctx context.Context, mode engine.ImageMode) context.Context {
	return context.WithValue(ctx, pullScopeKey{}, &pullScope{mode: mode, ids: map[string]string{}})
}

// pullScopeOf is ctx's scope; without one, images are resolved for a
// forward deploy and nothing is remembered.
func pullScopeOf(ctx context.Context) *pullScope {
	if s, ok := ctx.Value(pullScopeKey{}).(*pullScope); ok {
		return s
	}
	return &pullScope{mode: engine.ForDeploy, ids: map[string]string{}}
}

func (s *pullScope) resolved(ref, policy string) (string, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	id, ok := s.ids[ref+" "+policy]
	return id, ok
}

func (s *pullScope) remember(ref, policy, id string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ids[ref+" "+policy] = id
}

// imageModeFor is what a sync with trigger resolves images for: a rollback
// returns to images the host ran, without the registry.
func imageModeFor(trigger string) engine.ImageMode {
	if trigger == TriggerRollback {
		return engine.ForRestore
	}
	return engine.ForDeploy
}
