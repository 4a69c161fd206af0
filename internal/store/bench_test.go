package store

import (
	"context"
	"fmt"
	"testing"
)

func BenchmarkAddStep(b *testing.B) {
	ctx := context.Background()
	s := openTest(b)
	id, err := s.StartDeployment(ctx, Deployment{Stack: "web", Trigger: "poll"})
	if err != nil {
		b.Fatal(err)
	}
	st := Step{DeploymentID: id, Action: "recreate", Service: "app", Container: "web-app-1", Detail: "image changed"}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := s.AddStep(ctx, st); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkDeployments reads the newest 50 of 1000 deployments (10 steps
// each) over 5 stacks, as `gitopsd history` does.
func BenchmarkDeployments(b *testing.B) {
	ctx := context.Background()
	s := openTest(b)
	tx, err := s.db.Begin()
	if err != nil {
		b.Fatal(err)
	}
	for i := range 1000 {
		res, err := tx.Exec(`INSERT INTO deployments (stack, "trigger", to_rev, started_at, finished_at, outcome)
			VALUES (?, 'poll', ?, ?, ?, 'succeeded')`, fmt.Sprintf("stack-%d", i%5), fmt.Sprint(i), timeArg(at(i%60)), timeArg(at(i%60)))
		if err != nil {
			b.Fatal(err)
		}
		id, _ := res.LastInsertId()
		for j := range 10 {
			if _, err := tx.Exec(`INSERT INTO deployment_steps (deployment_id, at, action, service, container, detail)
				VALUES (?, ?, 'recreate', 'app', ?, 'image changed')`, id, timeArg(at(j)), fmt.Sprintf("c%d", j)); err != nil {
				b.Fatal(err)
			}
		}
	}
	if err := tx.Commit(); err != nil {
		b.Fatal(err)
	}
	for _, stack := range []string{"", "stack-3"} {
		b.Run("stack="+stack, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				ds, err := s.Deployments(ctx, stack, 50)
				if err != nil || len(ds) != 50 || len(ds[0].Steps) != 10 {
					b.Fatalf("%d deployments, %v", len(ds), err)
				}
			}
		})
	}
}
