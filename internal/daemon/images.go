package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gitopsd/gitopsd/internal/engine"
	"github.com/gitopsd/gitopsd/internal/store"
	"github.com/gitopsd/gitopsd/internal/sync"
)

// pruneEvery is how often, at most, a reconcile looks for images to prune:
// pruning reads every kept revision and needs no hurry.
const pruneEvery = 10 * time.Minute

// pruneImagesDue prunes images when images.prune_after is set and the last
// prune is older than pruneEvery.
func (d *Daemon) pruneImagesDue(ctx context.Context) {
	if d.cfg.Images.PruneAfter <= 0 {
		return
	}
	d.mu.Lock()
	due := d.now().Sub(d.lastImagePrune) >= pruneEvery
	if due {
		d.lastImagePrune = d.now()
	}
	d.mu.Unlock()
	if due {
		if _, err := d.pruneImages(ctx); err != nil {
			d.log.Warn("prune images", "err", err)
		}
	}
}

// pruneImages removes the images gitopsd built or pulled that have not been
// in use for images.prune_after: in use means run by any container of the
// host, or wanted by the applied or the last healthy revision of a stack,
// so a rollback finds its images with the registry unreachable. Images
// gitopsd did not bring are never touched. When what a kept revision wants
// cannot be known, nothing is removed. It returns the removed image IDs.
func (d *Daemon) pruneImages(ctx context.Context) ([]string, error) {
	kept, err := d.keptImages(ctx)
	if err != nil {
		return nil, fmt.Errorf("find the images kept revisions use (nothing removed): %w", err)
	}
	now := d.now()
	if err := d.adoptUnrecordedBuilds(ctx, now); err != nil {
		return nil, err
	}
	ids := make([]string, 0, len(kept))
	for id := range kept {
		ids = append(ids, id)
	}
	if err := d.store.MarkImagesUsed(ctx, ids, now); err != nil {
		return nil, err
	}
	unused, err := d.store.UnusedImages(ctx, now.Add(-d.cfg.Images.PruneAfter))
	if err != nil {
		return nil, err
	}
	var removed []string
	var errs []error
	for _, im := range unused {
		if kept[im.ID] {
			continue
		}
		err := d.engine.RemoveImage(ctx, im.ID)
		if errors.Is(err, engine.ErrImageInUse) {
			// A container took it up since kept was read.
			errs = append(errs, d.store.MarkImagesUsed(ctx, []string{im.ID}, now))
			continue
		}
		if err != nil {
			errs = append(errs, err)
			continue
		}
		d.log.Info("removed unused image", "image", im.Ref, "id", im.ID, "origin", im.Origin, "unused_since", im.LastUsedAt)
		removed = append(removed, im.ID)
		errs = append(errs, d.store.MarkImageRemoved(ctx, im.ID, now))
	}
	return removed, errors.Join(errs...)
}

// keptImages are the image IDs no prune may remove: those of every
// container, and those the applied and the last healthy revision of every
// stack run, as a dry run of their desired state finds them.
func (d *Daemon) keptImages(ctx context.Context) (map[string]bool, error) {
	kept, err := d.engine.ContainerImages(ctx)
	if err != nil {
		return nil, err
	}
	states, err := d.store.Stacks(ctx)
	if err != nil {
		return nil, err
	}
	for _, s := range states {
		for _, rev := range []string{s.Revision, s.LastHealthyRevision} {
			if rev == "" {
				continue
			}
			dir, err := d.source.Checkout(ctx, rev)
			if err != nil {
				return nil, fmt.Errorf("stack %s revision %s: %w", s.Name, rev, err)
			}
			st, err := d.stacks.Load(ctx, dir, s.Name, d.host)
			if err != nil {
				return nil, fmt.Errorf("stack %s revision %s: %w", s.Name, rev, err)
			}
			images, err := d.rec.PrepareImages(ctx, st, rev, sync.ImageDryRun)
			if err != nil {
				return nil, fmt.Errorf("stack %s revision %s: %w", s.Name, rev, err)
			}
			for _, id := range images {
				if id != "" {
					kept[id] = true
				}
			}
		}
	}
	return kept, nil
}

// adoptUnrecordedBuilds records the images this gitopsd built (they carry
// its LabelBuiltBy) that its database does not know: a kill -9 between a build
// and its record leaves one, which would otherwise stay forever. Their
// grace period starts now.
func (d *Daemon) adoptUnrecordedBuilds(ctx context.Context, now time.Time) error {
	built, err := d.engine.BuiltImages(ctx, d.rec.InstanceID)
	if err != nil {
		return err
	}
	for id, name := range built {
		adopted, err := d.store.AdoptImage(ctx, id, name, store.ImageBuilt, now)
		if err != nil {
			return err
		}
		if adopted {
			d.log.Info("recorded a built image the database did not know", "image", name, "id", id)
		}
	}
	return nil
}
