package engine

import (
	"errors"
	"testing"
	"time"

	"github.com/gitopsd/gitopsd/internal/stack/vocab"
)

func TestWantsPullPerPolicyAndMode(t *testing.T) {
	now := time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)
	policy := func(s string) vocab.PullPolicy {
		p, err := vocab.ParsePullPolicy(s)
		if err != nil {
			t.Fatal(err)
		}
		return p
	}
	for _, tc := range []struct {
		name    string
		policy  string
		mode    ImageMode
		present bool
		last    time.Time
		want    bool
	}{
		{"missing, present", "missing", ForDeploy, true, time.Time{}, false},
		{"missing, absent", "missing", ForDeploy, false, time.Time{}, true},
		{"never, absent", "never", ForDeploy, false, time.Time{}, false},
		{"build, absent", "build", ForDeploy, false, time.Time{}, false},
		{"always, present", "always", ForDeploy, true, now, true},
		{"always, a poll's check", "always", ForCheck, true, now, true},
		{"always, a rollback with the image", "always", ForRestore, true, time.Time{}, false},
		{"always, a rollback without the image", "always", ForRestore, false, time.Time{}, true},
		{"daily, never pulled", "daily", ForDeploy, true, time.Time{}, true},
		{"daily, pulled 23h ago", "daily", ForDeploy, true, now.Add(-23 * time.Hour), false},
		{"daily, pulled 24h ago", "daily", ForCheck, true, now.Add(-24 * time.Hour), true},
		{"every_30m, pulled 10m ago", "every_30m", ForCheck, true, now.Add(-10 * time.Minute), false},
		{"every_30m, pulled 31m ago, a heal", "every_30m", ForRestore, true, now.Add(-31 * time.Minute), false},
		{"weekly, absent, pulled an hour ago", "weekly", ForDeploy, false, now.Add(-time.Hour), true},
	} {
		req := ImageRequest{Ref: "r/app:1", Policy: policy(tc.policy), Mode: tc.mode, LastPulled: tc.last}
		if got := wantsPull(req, tc.present, now); got != tc.want {
			t.Errorf("%s: wantsPull = %v, want %v", tc.name, got, tc.want)
		}
	}
}

func TestPullFailureSaysWhy(t *testing.T) {
	for _, tc := range []struct {
		engine string
		why    error
		want   string
	}{
		{`Error response from daemon: Get "http://127.0.0.1:5000/v2/app/manifests/v1": no basic auth credentials`, ErrPullUnauthorized,
			`unauthorized: Get "http://127.0.0.1:5000/v2/app/manifests/v1": no basic auth credentials`},
		{"unauthorized: authentication required", ErrPullUnauthorized, "unauthorized: authentication required"},
		{`Error response from daemon: Get "http://127.0.0.1:5000/v2/": dial tcp 127.0.0.1:5000: connect: connection refused`, ErrPullUnreachable,
			`unreachable: Get "http://127.0.0.1:5000/v2/": dial tcp 127.0.0.1:5000: connect: connection refused`},
		{"Error response from daemon: manifest for 127.0.0.1:5000/app:v9 not found: manifest unknown: manifest unknown", ErrPullNotFound,
			"not found: manifest for 127.0.0.1:5000/app:v9 not found: manifest unknown: manifest unknown"},
		{"something else entirely", nil, "something else entirely"},
	} {
		err := pullFailure(tc.engine, nil)
		if err.Error() != tc.want || (tc.why != nil && !errors.Is(err, tc.why)) {
			t.Errorf("%q:\n got  %q (is %v: %v)\n want %q", tc.engine, err, tc.why, errors.Is(err, tc.why), tc.want)
		}
	}
}
