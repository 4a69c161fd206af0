package store

import (
	"context"
	"fmt"
	"reflect"
	"testing"
	"time"
)

func TestDeploymentRoundTrip(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	d := Deployment{Stack: "web", Trigger: "webhook", From: "r1", To: "r2", StartedAt: at(10), Outcome: "running"}
	id, err := s.StartDeployment(ctx, d)
	if err != nil {
		t.Fatal(err)
	}
	got, ok, err := s.Deployment(ctx, id)
	if err != nil || !ok {
		t.Fatalf("Deployment: %v %v", ok, err)
	}
	if !got.FinishedAt.IsZero() || got.Outcome != "running" || got.Steps != nil {
		t.Errorf("running deployment = %+v", got)
	}
	steps := []Step{
		{DeploymentID: id, At: at(11), Action: "create", Service: "app", Container: "web-app-2", Detail: "image changed", Duration: 2340 * time.Millisecond, Replica: 2},
		{DeploymentID: id, At: at(12), Action: "start", Service: "app", Container: "web-app-2"},
		{DeploymentID: id, At: at(13), Action: "remove", Service: "app", Container: "web-app-1", Error: "conflict"},
	}
	for i := range steps {
		if steps[i].ID, err = s.AddStep(ctx, steps[i]); err != nil {
			t.Fatal(err)
		}
		steps[i].At = steps[i].At.UTC()
	}
	if err := s.FinishDeployment(ctx, id, "rolled_back", "app unhealthy", at(14)); err != nil {
		t.Fatal(err)
	}
	want := d
	want.ID, want.StartedAt, want.FinishedAt = id, d.StartedAt.UTC(), at(14).UTC()
	want.Outcome, want.Error, want.Steps = "rolled_back", "app unhealthy", steps
	got, _, err = s.Deployment(ctx, id)
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Errorf("Deployment =\n %+v\nwant\n %+v (%v)", got, want, err)
	}

	if err := s.FinishDeployment(ctx, 9999, "failed", "", at(1)); err == nil {
		t.Error("finishing an unknown deployment succeeded")
	}
	if _, err := s.AddStep(ctx, Step{DeploymentID: 9999, Action: "create"}); err == nil {
		t.Error("step of an unknown deployment accepted (foreign key not enforced)")
	}
	if _, ok, err := s.Deployment(ctx, 9999); ok || err != nil {
		t.Errorf("unknown deployment: ok=%v err=%v", ok, err)
	}
}

// seed records deployments for the stacks in order: each gets one step per
// index so that steps can be told apart. It returns the IDs in order.
func seed(t testing.TB, s *Store, stacks ...string) []int64 {
	t.Helper()
	ctx := context.Background()
	var ids []int64
	for i, name := range stacks {
		id, err := s.StartDeployment(ctx, Deployment{Stack: name, Trigger: "poll", To: fmt.Sprintf("r%d", i), StartedAt: at(i)})
		if err != nil {
			t.Fatal(err)
		}
		for j := 0; j <= i%3; j++ {
			if _, err := s.AddStep(ctx, Step{DeploymentID: id, At: at(i), Action: fmt.Sprintf("step-%d-%d", i, j)}); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.FinishDeployment(ctx, id, "succeeded", "", at(i)); err != nil {
			t.Fatal(err)
		}
		ids = append(ids, id)
	}
	return ids
}

func TestDeploymentsOrderLimitFilter(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	//            0      1     2      3      4     5
	ids := seed(t, s, "web", "db", "web", "web", "db", "web")
	tests := []struct {
		stack string
		limit int
		want  []int64
	}{
		{"", 0, []int64{ids[5], ids[4], ids[3], ids[2], ids[1], ids[0]}},
		{"", -1, []int64{ids[5], ids[4], ids[3], ids[2], ids[1], ids[0]}},
		{"", 2, []int64{ids[5], ids[4]}},
		{"web", 0, []int64{ids[5], ids[3], ids[2], ids[0]}},
		{"web", 3, []int64{ids[5], ids[3], ids[2]}},
		{"db", 1, []int64{ids[4]}},
		{"db", 10, []int64{ids[4], ids[1]}},
		{"cache", 0, nil},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprintf("%s/%d", tt.stack, tt.limit), func(t *testing.T) {
			ds, err := s.Deployments(ctx, tt.stack, tt.limit)
			if err != nil {
				t.Fatal(err)
			}
			var got []int64
			for _, d := range ds {
				got = append(got, d.ID)
				if tt.stack != "" && d.Stack != tt.stack {
					t.Errorf("deployment %d of stack %s", d.ID, d.Stack)
				}
				// Steps belong to this deployment, in insertion order.
				i := indexOf(ids, d.ID)
				if len(d.Steps) != i%3+1 {
					t.Errorf("deployment %d has %d steps, want %d", d.ID, len(d.Steps), i%3+1)
				}
				for j, st := range d.Steps {
					if st.DeploymentID != d.ID || st.Action != fmt.Sprintf("step-%d-%d", i, j) {
						t.Errorf("deployment %d step %d = %+v", d.ID, j, st)
					}
				}
			}
			if !reflect.DeepEqual(got, tt.want) {
				t.Errorf("ids = %v, want %v", got, tt.want)
			}
		})
	}
}

func indexOf(ids []int64, id int64) int {
	for i, x := range ids {
		if x == id {
			return i
		}
	}
	return -1
}

func TestLastDeploymentAndLastSucceeded(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	if _, ok, err := s.LastDeployment(ctx, "web"); ok || err != nil {
		t.Fatalf("empty: ok=%v err=%v", ok, err)
	}
	if _, ok, err := s.LastSucceeded(ctx, "web"); ok || err != nil {
		t.Fatalf("empty: ok=%v err=%v", ok, err)
	}
	ids := seed(t, s, "web", "web", "db")
	failed, err := s.StartDeployment(ctx, Deployment{Stack: "web", Trigger: "poll", To: "bad", StartedAt: at(20)})
	if err != nil {
		t.Fatal(err)
	}
	s.AddStep(ctx, Step{DeploymentID: failed, Action: "create"})
	s.FinishDeployment(ctx, failed, "failed", "unhealthy", at(21))

	last, ok, err := s.LastDeployment(ctx, "web")
	if err != nil || !ok || last.ID != failed || last.Outcome != "failed" || len(last.Steps) != 1 {
		t.Errorf("LastDeployment(web) = %+v %v %v", last, ok, err)
	}
	good, ok, err := s.LastSucceeded(ctx, "web")
	if err != nil || !ok || good.ID != ids[1] || good.To != "r1" || len(good.Steps) != 2 {
		t.Errorf("LastSucceeded(web) = %+v %v %v", good, ok, err)
	}
	good, ok, err = s.LastSucceeded(ctx, "db")
	if err != nil || !ok || good.ID != ids[2] {
		t.Errorf("LastSucceeded(db) = %+v %v %v", good, ok, err)
	}
}

func TestFailRunningDeployments(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	done := seed(t, s, "web")[0]
	a, _ := s.StartDeployment(ctx, Deployment{Stack: "web", Trigger: "poll", StartedAt: at(1)})
	b, _ := s.StartDeployment(ctx, Deployment{Stack: "db", Trigger: "manual", StartedAt: at(2), Error: "pull slow"})
	n, err := s.FailRunningDeployments(ctx, "interrupted", at(30))
	if err != nil || n != 2 {
		t.Fatalf("FailRunningDeployments = %d, %v; want 2", n, err)
	}
	for id, wantErr := range map[int64]string{a: "interrupted", b: "pull slow; interrupted"} {
		d, _, _ := s.Deployment(ctx, id)
		if d.Outcome != "failed" || d.Error != wantErr || !d.FinishedAt.Equal(at(30)) {
			t.Errorf("deployment %d = %+v", id, d)
		}
	}
	if d, _, _ := s.Deployment(ctx, done); d.Outcome != "succeeded" || d.Error != "" {
		t.Errorf("finished deployment touched: %+v", d)
	}
	if n, err := s.FailRunningDeployments(ctx, "again", at(31)); n != 0 || err != nil {
		t.Errorf("second call = %d, %v; want 0", n, err)
	}
}

func TestDeleteStackKeepsHistory(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	seed(t, s, "web")
	s.PutStack(ctx, StackState{Name: "web"})
	if err := s.DeleteStack(ctx, "web"); err != nil {
		t.Fatal(err)
	}
	if ds, err := s.Deployments(ctx, "web", 0); err != nil || len(ds) != 1 || len(ds[0].Steps) != 1 {
		t.Errorf("history after delete: %v %v", ds, err)
	}
}

func TestStepsDeletedWithDeployment(t *testing.T) {
	s := openTest(t)
	id := seed(t, s, "a", "b", "c")[2]
	if _, err := s.db.Exec(`DELETE FROM deployments WHERE id = ?`, id); err != nil {
		t.Fatal(err)
	}
	var n int
	s.db.QueryRow(`SELECT count(*) FROM deployment_steps WHERE deployment_id = ?`, id).Scan(&n)
	if n != 0 {
		t.Errorf("%d steps outlived their deployment", n)
	}
}

// TestLastSteps: the newest step of an action per name, of one stack only.
func TestLastSteps(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	add := func(stack string, steps ...Step) {
		t.Helper()
		id, err := s.StartDeployment(ctx, Deployment{Stack: stack, To: "r"})
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range steps {
			st.DeploymentID = id
			if _, err := s.AddStep(ctx, st); err != nil {
				t.Fatal(err)
			}
		}
	}
	add("shop", Step{Action: "restore-volume", Container: "data", Error: "remote down"}, Step{Action: "create", Container: "data"})
	add("shop", Step{Action: "restore-volume", Container: "data", Detail: "restored snapshot 1"}, Step{Action: "restore-volume", Container: "logs", Detail: "started empty"})
	add("other", Step{Action: "restore-volume", Container: "data", Detail: "of another stack"})
	got, err := s.LastSteps(ctx, "shop", "restore-volume")
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 || got["data"].Detail != "restored snapshot 1" || got["data"].Error != "" || got["logs"].Detail != "started empty" {
		t.Fatalf("LastSteps = %+v", got)
	}
}

// TestStartDeploymentWithSteps: the steps given with a deployment (a
// sync's phases) are written with it, first and in order, before the
// steps added while it runs.
func TestStartDeploymentWithSteps(t *testing.T) {
	ctx := context.Background()
	s := openTest(t)
	id, err := s.StartDeployment(ctx, Deployment{Stack: "web", Trigger: "poll", StartedAt: at(1), Steps: []Step{
		{At: at(0), Action: "fetch", Detail: "abc", Duration: 40 * time.Millisecond},
		{At: at(1), Action: "plan", Duration: 3 * time.Millisecond},
	}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.AddStep(ctx, Step{DeploymentID: id, Action: "create", Service: "app", Replica: 1}); err != nil {
		t.Fatal(err)
	}
	d, _, err := s.Deployment(ctx, id)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, st := range d.Steps {
		got = append(got, fmt.Sprintf("%s %s %s", st.Action, st.Detail, st.Duration))
	}
	want := []string{"fetch abc 40ms", "plan  3ms", "create  0s"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("steps %q, want %q", got, want)
	}
}
