package store

import (
	"context"
	"errors"
	"os"
	"strings"
	"testing"
)

// TestFreeTextIsRedacted: every writer of free text (errors, step details,
// drift details) passes it through the store's redact function, so a
// secret in a hook's or probe's output reaches neither the database file
// nor its WAL, while the rest of the text is kept.
func TestFreeTextIsRedacted(t *testing.T) {
	const secret = "hunter2-the-secret"
	s := openTest(t)
	s.SetRedact(func(v string) string { return strings.ReplaceAll(v, secret, "[redacted]") })
	ctx := context.Background()
	out := func(where string) string { return where + " printed PASSWORD=" + secret }

	must := func(err error) {
		t.Helper()
		if err != nil {
			t.Fatal(err)
		}
	}
	must(s.PutSourceState(ctx, SourceState{URL: "u", Branch: "main", Error: out("source")}))
	must(s.PutStack(ctx, StackState{Name: "web", Sync: "Failed", Error: out("stack")}))
	id, err := s.StartDeployment(ctx, Deployment{Stack: "web", Trigger: "poll", Error: out("deployment start")})
	must(err)
	_, err = s.AddStep(ctx, Step{DeploymentID: id, Action: "create", Detail: out("step detail"), Error: out("step error")})
	must(err)
	must(s.FinishDeployment(ctx, id, "failed", out("deployment"), at(1)))
	id2, err := s.StartDeployment(ctx, Deployment{Stack: "web", Trigger: "poll"})
	must(err)
	_, err = s.FailRunningDeployments(ctx, out("interrupted"), at(2))
	must(err)
	_, _, err = s.OpenDrift(ctx, Drift{Stack: "web", Kind: "modified", Detail: out("drift")})
	must(err)
	_, _, err = s.OpenDrift(ctx, Drift{Stack: "web", Kind: "modified", Detail: out("drift again")})
	must(err)
	snap, err := s.StartSnapshot(ctx, Snapshot{Stack: "web", Volume: "data", Trigger: "manual"})
	must(err)
	must(s.FinishSnapshot(ctx, Snapshot{ID: snap, Status: SnapshotFailed, Error: out("snapshot")}))
	_, err = s.StartSnapshot(ctx, Snapshot{Stack: "web", Volume: "data", Trigger: "manual"})
	must(err)
	_, err = s.FailRunningSnapshots(ctx, out("snapshot cut"))
	must(err)
	_, err = s.RecordRestoreTest(ctx, RestoreTest{SnapshotID: snap, Stack: "web", Volume: "data", Level: 3, StartedAt: at(3), Error: out("verify")})
	must(err)
	_, err = s.RecordBuild(ctx, Build{Stack: "web", Service: "app", StartedAt: at(4), FinishedAt: at(5), Error: out("build")})
	must(err)

	// What is read back is the redacted text, the rest of it kept.
	st, _, err := s.Stack(ctx, "web")
	must(err)
	d, _, err := s.Deployment(ctx, id)
	must(err)
	d2, _, err := s.Deployment(ctx, id2)
	must(err)
	for what, got := range map[string]string{"stack error": st.Error, "deployment error": d.Error, "step detail": d.Steps[0].Detail, "interrupted deployment": d2.Error} {
		if !strings.Contains(got, "printed PASSWORD=[redacted]") {
			t.Errorf("%s reads back %q", what, got)
		}
	}

	for _, f := range []string{s.Path(), s.Path() + "-wal"} {
		b, err := os.ReadFile(f)
		if errors.Is(err, os.ErrNotExist) && f != s.Path() {
			continue
		}
		must(err)
		if strings.Contains(string(b), secret) {
			t.Errorf("%s holds the secret", f)
		}
	}
}
