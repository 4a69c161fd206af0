package sync

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	gosync "sync"
	"time"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/gitopsd/gitopsd/internal/engine"
	"github.com/gitopsd/gitopsd/internal/policy"
	"github.com/gitopsd/gitopsd/internal/stack"
	"github.com/gitopsd/gitopsd/internal/store"
)

// ImageName is the image compose gives a service: its image:, else
// <project>-<service>, which is what a build: without image: is tagged.
func ImageName(project string, svc types.ServiceConfig) string {
	if svc.Image != "" {
		return svc.Image
	}
	return project + "-" + svc.Name
}

// buildSpec resolves svc's build: section against the stack's checkout.
// The loader has refused what cannot be built (stack.checkBuilds): keys
// only BuildKit honours, remote contexts, and paths outside the repository.
func buildSpec(svc types.ServiceConfig) (engine.BuildSpec, error) {
	b := svc.Build
	spec := engine.BuildSpec{
		ContextDir:       b.Context,
		Dockerfile:       b.Dockerfile,
		DockerfileInline: b.DockerfileInline,
		Args:             map[string]*string(b.Args),
		Target:           b.Target,
		Labels:           map[string]string(b.Labels),
		Network:          b.Network,
		ShmSize:          int64(b.ShmSize),
		NoCache:          b.NoCache,
		Pull:             b.Pull,
	}
	if len(b.ExtraHosts) > 0 {
		spec.ExtraHosts = b.ExtraHosts.AsList(":")
		sort.Strings(spec.ExtraHosts)
	}
	if len(b.Platforms) == 1 {
		spec.Platform = b.Platforms[0]
	}
	if spec.DockerfileInline == "" && spec.Dockerfile != "" {
		file := spec.Dockerfile
		if !filepath.IsAbs(file) {
			file = filepath.Join(spec.ContextDir, file)
		}
		if !policy.Within(spec.ContextDir, file) {
			// The builder reads the Dockerfile from the context: one from
			// elsewhere in the repository is sent as if inline.
			data, err := os.ReadFile(file)
			if err != nil {
				return engine.BuildSpec{}, fmt.Errorf("services.%s.build.dockerfile: %w", svc.Name, err)
			}
			spec.Dockerfile, spec.DockerfileInline = "", string(data)
		}
	}
	return spec, nil
}

// buildDigests remembers the digest of each build context already read:
// checkouts never change, so a context is read once per revision, not on
// every poll and drift check.
type buildDigests struct {
	mu   gosync.Mutex
	byID map[string]string
}

// maxRememberedDigests bounds the cache; it is cleared when full, as old
// revisions' contexts are rarely asked for again.
const maxRememberedDigests = 1024

func (c *buildDigests) digest(spec engine.BuildSpec, limit int64) (string, error) {
	real, err := filepath.EvalSymlinks(spec.ContextDir)
	if err != nil {
		return "", fmt.Errorf("build context %s: %w", spec.ContextDir, err)
	}
	cfg, err := json.Marshal(spec)
	if err != nil {
		return "", err
	}
	key := real + "\x00" + string(cfg)
	c.mu.Lock()
	d, ok := c.byID[key]
	c.mu.Unlock()
	if ok {
		return d, nil
	}
	if d, err = engine.BuildDigest(spec, limit); err != nil {
		return "", err
	}
	c.mu.Lock()
	if c.byID == nil || len(c.byID) >= maxRememberedDigests {
		c.byID = map[string]string{}
	}
	c.byID[key] = d
	c.mu.Unlock()
	return d, nil
}

// unbuiltPrefix marks, in a dry run, the image a build would make: a
// digest with no image yet.
const unbuiltPrefix = "unbuilt:"

// builtImage is the local ID of the image svc builds from st at revision.
// An image already built from the same digest (the context's files and the
// build config) is reused and tagged again if its tag has moved, so a
// rollback needs neither the builder nor a registry; otherwise it is built
// (pull_policy: build builds each revision anew). In a dry run nothing is
// built, and an image not built yet is unbuiltPrefix and its digest.
func (r *Reconciler) builtImage(ctx context.Context, st *stack.Stack, svc types.ServiceConfig, revision string, dryRun bool) (string, error) {
	tag := ImageName(st.Name, svc)
	spec, err := buildSpec(svc)
	if err != nil {
		return "", err
	}
	digest, err := r.digests.digest(spec, r.MaxBuildContext)
	if err != nil {
		return "", fmt.Errorf("build %s: %w", tag, err)
	}
	if svc.PullPolicy == types.PullPolicyBuild {
		sum := sha256.Sum256([]byte(digest + "\x00" + revision))
		digest = hex.EncodeToString(sum[:])
	}
	last, ok, err := r.Store.LastGoodBuild(ctx, st.Name, svc.Name, digest)
	if err != nil {
		return "", err
	}
	if ok {
		// The tag names the built image on every poll but the first after
		// a rollback or a new build: one inspect settles it then.
		tagged, _, err := r.Runtime.LocalImage(ctx, tag)
		if err != nil {
			return "", err
		}
		present := tagged == last.ImageID
		if !present {
			if _, present, err = r.Runtime.LocalImage(ctx, last.ImageID); err != nil {
				return "", err
			}
		}
		if present {
			if !dryRun {
				for _, t := range append([]string{tag}, svc.Build.Tags...) {
					if t == tag && tagged == last.ImageID {
						continue
					}
					if err := r.Runtime.TagImage(ctx, last.ImageID, t); err != nil {
						return "", err
					}
				}
			}
			return last.ImageID, nil
		}
	}
	if dryRun {
		// An ID no image has: the plan shows the service recreated, as
		// the sync would, once built.
		return unbuiltPrefix + digest, nil
	}
	rec := store.Build{Stack: st.Name, Service: svc.Name, Digest: digest, Revision: revision, Tag: tag, StartedAt: now()}
	r.Log.Info("building image", "stack", st.Name, "service", svc.Name, "image", tag, "digest", digest[:12])
	id, berr := r.Runtime.Build(ctx, spec, digest, r.InstanceID, append([]string{tag}, svc.Build.Tags...), r.MaxBuildContext)
	rec.FinishedAt, rec.ImageID, rec.OK = now(), id, berr == nil
	if berr != nil {
		rec.Error = berr.Error()
	}
	if _, err := r.Store.RecordBuild(ctx, rec); err != nil {
		return "", err
	}
	if berr != nil {
		return "", fmt.Errorf("build %s: %w", tag, berr)
	}
	if err := r.Store.NoteImage(ctx, id, tag, store.ImageBuilt, rec.FinishedAt); err != nil {
		return "", err
	}
	r.Log.Info("built image", "stack", st.Name, "service", svc.Name, "image", tag, "id", id, "took", rec.FinishedAt.Sub(rec.StartedAt).Round(time.Millisecond))
	return id, nil
}
