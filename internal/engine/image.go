package engine

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/gitopsd/gitopsd/internal/stack/vocab"
	"github.com/moby/moby/api/pkg/authconfig"
	"github.com/moby/moby/api/types/registry"
	"github.com/moby/moby/client"
)

// ImageMode is what an image is resolved for; it decides whether the
// registry is asked and what a failed pull means.
type ImageMode int

const (
	// ForDeploy is a forward deployment: a pull the policy asks for must
	// succeed, as with `docker compose up --pull`.
	ForDeploy ImageMode = iota
	// ForCheck is a poll comparing a stack with what runs: the policy's
	// pulls happen, so a moved tag shows, but while the registry fails the
	// image on the host still stands for the tag.
	ForCheck
	// ForRestore is a rollback or a heal returning to what ran: an image on
	// the host is used as it is, whatever the policy, so neither needs the
	// registry, and a tag moved meanwhile does not sneak an untested image
	// into a rollback.
	ForRestore
)

// ImageRequest is one image to make available.
type ImageRequest struct {
	Ref    string
	Policy vocab.PullPolicy
	Mode   ImageMode
	// LastPulled is when Ref was last pulled (zero: never, as far as
	// gitopsd knows). Periodic policies pull once it is older than Every.
	LastPulled time.Time
}

// ResolvedImage is the image a request resolved to.
type ResolvedImage struct {
	ID     string // sha256:...
	Pulled bool   // the registry was asked, and answered
	// PullErr is the failed pull a local image stood in for (ForCheck).
	PullErr error
}

// wantsPull decides whether resolving req asks the registry, given whether
// the host has the image and the time now.
func wantsPull(req ImageRequest, present bool, now time.Time) bool {
	switch {
	case !present:
		return req.Policy.MayPull()
	case req.Mode == ForRestore:
		return false
	case req.Policy.Name == vocab.PullAlways:
		return true
	case req.Policy.Every > 0:
		return req.LastPulled.IsZero() || now.Sub(req.LastPulled) >= req.Policy.Every
	}
	return false
}

// ResolveImage makes req.Ref available per its pull policy and mode and
// returns its local ID.
func (e *Engine) ResolveImage(ctx context.Context, req ImageRequest) (ResolvedImage, error) {
	localID, present, err := e.LocalImage(ctx, req.Ref)
	if err != nil {
		return ResolvedImage{}, err
	}
	if !present && !req.Policy.MayPull() {
		return ResolvedImage{}, fmt.Errorf("image %s is not present locally and pull_policy is %s", req.Ref, req.Policy.Name)
	}
	if !wantsPull(req, present, time.Now()) {
		return ResolvedImage{ID: localID}, nil
	}
	id, err := e.PullImage(ctx, req.Ref)
	switch {
	case err == nil:
		return ResolvedImage{ID: id, Pulled: true}, nil
	case present && req.Mode != ForDeploy:
		return ResolvedImage{ID: localID, PullErr: err}, nil
	}
	return ResolvedImage{}, err
}

// EnsureImage makes the image available per compose's pull_policy for a
// forward deployment and returns its local ID. Without a record of past
// pulls, the periodic policies take a present image as it is.
func (e *Engine) EnsureImage(ctx context.Context, ref, pullPolicy string) (string, error) {
	policy, err := vocab.ParsePullPolicy(pullPolicy)
	if err != nil {
		return "", err
	}
	if policy.Every > 0 {
		policy = vocab.PullPolicy{Name: vocab.PullMissing}
	}
	res, err := e.ResolveImage(ctx, ImageRequest{Ref: ref, Policy: policy, Mode: ForDeploy})
	return res.ID, err
}

// LocalImage returns the ID of the image ref names on this host; ok is
// false when the host has none.
func (e *Engine) LocalImage(ctx context.Context, ref string) (id string, ok bool, err error) {
	res, err := e.cli.ImageInspect(ctx, ref)
	if cerrdefs.IsNotFound(err) {
		return "", false, nil
	}
	if err != nil {
		return "", false, fmt.Errorf("inspect image %s: %w", ref, err)
	}
	return res.ID, true, nil
}

// PullImage pulls ref from its registry with the credentials the Docker
// config holds for it, read at each pull so a `docker login` counts at
// once, and returns the ID the reference names afterwards. A failure names
// the image and the registry and says why: unauthorized, not found or
// unreachable.
func (e *Engine) PullImage(ctx context.Context, ref string) (string, error) {
	host, err := RegistryHost(ref)
	if err != nil {
		return "", fmt.Errorf("pull image %s: %w", ref, err)
	}
	fail := func(err error) error {
		return fmt.Errorf("pull image %s from registry %s: %w", ref, host, err)
	}
	auth, err := RegistryAuth(ctx, e.dockerConfig, host)
	if err != nil {
		return "", fail(err)
	}
	encoded := ""
	if auth != (registry.AuthConfig{}) {
		if encoded, err = authconfig.Encode(auth); err != nil {
			return "", fail(errors.New("encode credentials"))
		}
	}
	if err := e.pull(ctx, ref, encoded); err != nil {
		return "", fail(err)
	}
	id, ok, err := e.LocalImage(ctx, ref)
	if err != nil {
		return "", err
	}
	if !ok {
		return "", fail(errors.New("pulled, but the engine does not have it"))
	}
	return id, nil
}

func (e *Engine) pull(ctx context.Context, ref, registryAuth string) error {
	// The engine's own registry client waits on a silent registry without
	// end; every progress message it passes on restarts the stall timer.
	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	stall := time.AfterFunc(e.pullStall, func() { cancel(errPullStalled) })
	defer stall.Stop()
	stalled := func(err error) error {
		if errors.Is(context.Cause(ctx), errPullStalled) {
			return fmt.Errorf("%w: no progress for %s (the registry accepts connections but does not answer)", ErrPullUnreachable, e.pullStall)
		}
		return err
	}
	resp, err := e.cli.ImagePull(ctx, ref, client.ImagePullOptions{RegistryAuth: registryAuth})
	if err != nil {
		return stalled(pullFailure(err.Error(), err))
	}
	defer resp.Close()
	for msg, err := range resp.JSONMessages(ctx) {
		stall.Reset(e.pullStall)
		if err != nil {
			return stalled(pullFailure(err.Error(), err))
		}
		if msg.Error != nil {
			return pullFailure(msg.Error.Message, nil)
		}
	}
	return stalled(nil)
}

// errPullStalled is the cause of a pull's context given up for silence.
var errPullStalled = errors.New("pull stalled")

// Why a pull failed, as the error of PullImage says it first.
var (
	ErrPullUnauthorized = errors.New("unauthorized")
	ErrPullNotFound     = errors.New("not found")
	ErrPullUnreachable  = errors.New("unreachable")
)

// pullFailure turns what the engine said about a failed pull (msg, and
// err when the request itself failed) into an error that starts with why.
func pullFailure(msg string, err error) error {
	detail := strings.TrimSpace(strings.TrimPrefix(msg, "Error response from daemon: "))
	why := pullReason(strings.ToLower(detail), err)
	if why == nil {
		return errors.New(detail)
	}
	if rest, ok := strings.CutPrefix(detail, why.Error()); ok {
		return fmt.Errorf("%w%s", why, rest) // the engine said it first: do not say it twice
	}
	return fmt.Errorf("%w: %s", why, detail)
}

// pullReason classifies a pull failure by the error's kind when the engine
// gave one, else by the registry's words the engine passed on.
func pullReason(lower string, err error) error {
	has := func(words ...string) bool {
		for _, w := range words {
			if strings.Contains(lower, w) {
				return true
			}
		}
		return false
	}
	switch {
	case cerrdefs.IsUnauthorized(err), cerrdefs.IsPermissionDenied(err),
		has("unauthorized", "authentication required", "no basic auth credentials", "access denied", "access to the resource is denied"):
		return ErrPullUnauthorized
	case has("connection refused", "no such host", "i/o timeout", "network is unreachable", "no route to host",
		"tls handshake timeout", "connection reset", "client.timeout", "server gave http response to https client"):
		return ErrPullUnreachable
	case cerrdefs.IsNotFound(err), has("manifest unknown", "not found", "name unknown"):
		return ErrPullNotFound
	}
	return nil
}
