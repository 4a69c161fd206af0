package sync

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/gitopsd/gitopsd/internal/engine"
	"github.com/gitopsd/gitopsd/internal/ids"
	"github.com/gitopsd/gitopsd/internal/stack"
	"github.com/gitopsd/gitopsd/internal/stack/vocab"
	"github.com/gitopsd/gitopsd/internal/store"
)

// ImageMode says what preparing a stack's images may do: whether the
// registry is asked, whether the builder runs, whether tags move. Every
// caller names it; nothing else carries it.
type ImageMode int

const (
	// ImageDryRun asks nothing and changes nothing: an image the host
	// lacks has no ID, an image not built yet is unbuiltPrefix and its
	// digest (the plan shows its service recreated, as a sync would).
	// Only a missing image is forgiven: an engine that fails otherwise
	// fails the dry run.
	ImageDryRun ImageMode = iota
	// ImageCheck is a drift check that pulls per pull_policy, so a moved
	// tag shows; while the registry fails, the image on the host stands
	// for the tag. It never builds and never tags.
	ImageCheck
	// ImageDeploy is a forward deployment: a pull the policy asks for must
	// succeed, and what has no image yet is built.
	ImageDeploy
	// ImageRestore is a rollback or a heal returning to what ran: the
	// images on the host are taken as they are, without the registry
	// (built again only if the host lost them).
	ImageRestore
)

// engineMode is what the engine resolves an image for in mode.
func (m ImageMode) engineMode() engine.ImageMode {
	switch m {
	case ImageCheck:
		return engine.ForCheck
	case ImageRestore:
		return engine.ForRestore
	}
	return engine.ForDeploy
}

// acts reports whether mode may build and move tags.
func (m ImageMode) acts() bool { return m == ImageDeploy || m == ImageRestore }

// Images is the local ID of the image each service of a stack runs, by
// service name: what the image phase hands to Desire.
type Images map[string]string

// PrepareImages makes the images of st at revision available as mode
// allows (pulled, built, tagged, and recorded in the store) and returns
// their IDs. Services that build come first, as compose builds every image
// before it creates a container: another service may run a built image by
// its name.
func (r *Reconciler) PrepareImages(ctx context.Context, st *stack.Stack, revision string, mode ImageMode) (Images, error) {
	return r.prepareImages(ctx, st, revision, mode, nil)
}

// prepareImages is PrepareImages with pinned: image references whose ID is
// taken as given (a rollback's, see imagesRunBy).
func (r *Reconciler) prepareImages(ctx context.Context, st *stack.Stack, revision string, mode ImageMode, pinned map[string]string) (Images, error) {
	p := imagePrep{r: r, mode: mode, pinned: pinned, ids: map[string]string{}}
	ids := Images{}
	names := st.Project.ServiceNames()
	for _, builds := range []bool{true, false} {
		for _, name := range names {
			svc := st.Project.Services[name]
			if (svc.Build != nil) != builds {
				continue
			}
			id, err := p.serviceImage(ctx, st, svc, revision)
			if err != nil {
				return nil, fmt.Errorf("service %s: %w", name, err)
			}
			ids[name] = id
		}
	}
	return ids, nil
}

// imagePrep is one preparation of a stack's images: its mode, the images
// it resolved already (so services sharing an image pull it once) and, for
// a rollback, the images pinned to what the revision ran.
type imagePrep struct {
	r      *Reconciler
	mode   ImageMode
	ids    map[string]string // ref + " " + pull_policy -> image ID
	pinned map[string]string // ref -> the image ID to take, whatever the tag names
}

// serviceImage is the local ID of the image svc runs: built from the
// checkout when it has a build: section (unless pull_policy: never, which
// takes the image as the host has it), else pulled per pull_policy.
func (p *imagePrep) serviceImage(ctx context.Context, st *stack.Stack, svc types.ServiceConfig, revision string) (string, error) {
	if svc.Build != nil && svc.PullPolicy != types.PullPolicyNever {
		return p.r.builtImage(ctx, st, svc, revision, !p.mode.acts())
	}
	return p.image(ctx, ImageName(st.Name, svc), svc.PullPolicy)
}

// image returns the local ID of ref, pulling it when pull_policy says so
// for the mode, once per preparation. In a dry run a missing image is not
// an error: its ID is simply unknown.
func (p *imagePrep) image(ctx context.Context, ref, pullPolicy string) (string, error) {
	if p.mode == ImageDryRun {
		id, _, err := p.r.Runtime.LocalImage(ctx, ref)
		return id, err
	}
	if id, ok := p.pinned[ref]; ok {
		// Containers are created by name, as compose creates them: the
		// name must name the pinned image again.
		if err := p.r.Runtime.TagImage(ctx, id, ref); err != nil {
			return "", err
		}
		return id, nil
	}
	key := ref + " " + pullPolicy
	if id, ok := p.ids[key]; ok {
		return id, nil
	}
	id, err := p.r.resolveImage(ctx, ref, pullPolicy, p.mode.engineMode())
	if err != nil {
		return "", err
	}
	p.ids[key] = id
	return id, nil
}

// resolveImage makes ref available per pull_policy for mode. The periodic
// policies (daily, weekly, every_<duration>) go by the last pull the store
// recorded, so a restart does not pull everything again.
func (r *Reconciler) resolveImage(ctx context.Context, ref, pullPolicy string, mode engine.ImageMode) (string, error) {
	policy, err := vocab.ParsePullPolicy(pullPolicy)
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
	res, err := r.Runtime.ResolveImage(ctx, req)
	if err != nil {
		return "", err
	}
	if res.PullErr != nil {
		r.Log.Warn("pull failed; the image on this host stands for the tag", "image", ref, "err", res.PullErr)
	}
	if res.Pulled {
		r.Log.Info("pulled image", "image", ref, "id", ids.Short(res.ID))
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

// imagesRunBy is, for each image reference, the image that revision's own
// containers still run (the replicas a failed roll left in place or put
// back): a rollback to revision takes those rather than what the tag names
// now, so a tag the failed revision's pull moved does not bring its image
// back with the rollback.
func (r *Reconciler) imagesRunBy(ctx context.Context, stackName, revision string) (map[string]string, error) {
	cs, err := r.Runtime.Containers(ctx, stackName)
	if err != nil {
		return nil, fmt.Errorf("find the images revision %s runs: %w", ids.Short(revision), err)
	}
	pinned := map[string]string{}
	for _, c := range cs {
		if c.Labels[engine.LabelRevision] == revision && c.Image != "" && c.ImageID != "" {
			pinned[c.Image] = c.ImageID
		}
	}
	return pinned, nil
}

// checkExternalNetworks fails when a network st's services join is
// external (not the stack's to create) and does not exist.
func (r *Reconciler) checkExternalNetworks(ctx context.Context, st *stack.Stack) error {
	p := st.Project
	for _, key := range slices.Sorted(maps.Keys(usedNetworks(p))) {
		if n, ok := p.Networks[key]; ok && bool(n.External) {
			if _, err := r.Runtime.EnsureNetwork(ctx, p, key, nil); err != nil {
				return err
			}
		}
	}
	return nil
}
