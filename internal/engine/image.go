package engine

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/pkg/authconfig"
	"github.com/moby/moby/api/types/registry"
	"github.com/moby/moby/client"
)

// Pull policies of the compose specification.
const (
	PullAlways       = "always"
	PullNever        = "never"
	PullMissing      = "missing"
	PullIfNotPresent = "if_not_present" // compose's older name of missing
	PullBuild        = "build"
	PullDaily        = "daily"
	PullWeekly       = "weekly"
	// PullEveryPrefix starts the periodic policies such as every_12h.
	PullEveryPrefix = "every_"
)

// PullPolicy is a service's pull_policy, read.
type PullPolicy struct {
	Name string // as written; "" is missing
	// Every is the period of daily, weekly and every_<duration>: the image
	// is pulled again once its last pull is older. 0 for the other policies.
	Every time.Duration
}

// ParsePullPolicy reads compose's pull_policy values: always, never,
// missing (or if_not_present, or nothing), build, daily, weekly and
// every_<duration> with compose's units w, d, h, m and s (every_12h,
// every_1d12h, every_30m).
func ParsePullPolicy(s string) (PullPolicy, error) {
	p := PullPolicy{Name: s}
	switch {
	case s == "", s == PullMissing, s == PullIfNotPresent, s == PullAlways, s == PullNever, s == PullBuild:
	case s == PullDaily:
		p.Every = 24 * time.Hour
	case s == PullWeekly:
		p.Every = 7 * 24 * time.Hour
	case strings.HasPrefix(s, PullEveryPrefix):
		d, err := parseComposeDuration(strings.TrimPrefix(s, PullEveryPrefix))
		if err != nil {
			return PullPolicy{}, fmt.Errorf("pull_policy %q: %w", s, err)
		}
		p.Every = d
	default:
		return PullPolicy{}, fmt.Errorf("pull_policy %q: want always, missing, if_not_present, never, build, daily, weekly or every_<duration> (every_12h)", s)
	}
	return p, nil
}

// mayPull: the policy lets gitopsd pull the image when the host lacks it
// (never does not; build leaves images to the builder).
func (p PullPolicy) mayPull() bool { return p.Name != PullNever && p.Name != PullBuild }

// composeDurationRE is compose's every_ syntax: numbers with a unit each.
var composeDurationRE = regexp.MustCompile(`^(?:[0-9]+[wdhms])+$`)

var composeUnits = map[byte]time.Duration{'w': 7 * 24 * time.Hour, 'd': 24 * time.Hour, 'h': time.Hour, 'm': time.Minute, 's': time.Second}

// parseComposeDuration reads "12h", "1d12h", "2w", "90m": Go's durations
// lack the days and weeks compose allows.
func parseComposeDuration(s string) (time.Duration, error) {
	if !composeDurationRE.MatchString(s) {
		return 0, errors.New("the period must be numbers with units w, d, h, m or s, such as 12h or 1d12h")
	}
	var total time.Duration
	for rest := s; rest != ""; {
		i := strings.IndexAny(rest, "wdhms")
		n, err := strconv.ParseInt(rest[:i], 10, 64)
		unit := composeUnits[rest[i]]
		if err != nil || n > int64((1<<63-1)/unit) {
			return 0, errors.New("the period is too long")
		}
		total += time.Duration(n) * unit
		rest = rest[i+1:]
	}
	if total <= 0 {
		return 0, errors.New("the period must be longer than 0")
	}
	return total, nil
}

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
	Policy PullPolicy
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
		return req.Policy.mayPull()
	case req.Mode == ForRestore:
		return false
	case req.Policy.Name == PullAlways:
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
	if !present && !req.Policy.mayPull() {
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
	policy, err := ParsePullPolicy(pullPolicy)
	if err != nil {
		return "", err
	}
	if policy.Every > 0 {
		policy = PullPolicy{Name: PullMissing}
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
