package main

import (
	"bytes"
	"strings"
	"testing"

	"github.com/gitopsd/gitopsd/internal/api"
)

func TestPrintHistory(t *testing.T) {
	var b bytes.Buffer
	err := printHistory(&b, []api.Deployment{{
		ID: 9, Stack: "web", Trigger: "retry", From: "1111111111111111", To: "2222222222222222",
		StartedAt: "2026-01-02T03:04:05Z", Outcome: "rolled_back", Error: "recreate app#1:\nunhealthy",
		Steps: []api.Step{
			{Action: "create-network", DurationMS: 15},
			{Action: "recreate", Service: "app", Replica: 1, Container: "web-app-1", Detail: "image changed", Error: "unhealthy", DurationMS: 3104},
			{Action: "create", Service: "db", Container: "fixed", DurationMS: 65_000},
		},
	}})
	if err != nil {
		t.Fatal(err)
	}
	want := `9  web  rolled_back  111111111111 -> 222222222222  retry  started 2026-01-02T03:04:05Z
    error: recreate app#1: unhealthy
    create-network  -                 15ms
    recreate        app#1  web-app-1  3.104s  image changed
                                              error: unhealthy
    create          db     fixed      1m5s
`
	if got := b.String(); got != want {
		t.Fatalf("history:\n%s\nwant:\n%s", got, want)
	}
}

func TestPrintStatusBranch(t *testing.T) {
	head := strings.Repeat("b", 40)
	var b bytes.Buffer
	err := printStatus(&b, api.Status{Host: "h", Source: api.SourceStatus{Branch: "main", Head: head}, Stacks: []api.StackStatus{
		{Name: "pinned", Revision: strings.Repeat("a", 40), Pinned: true, Head: head, BranchAhead: 1},
		{Name: "held", Revision: strings.Repeat("c", 40), Held: true, Head: head, BranchAhead: 3},
		{Name: "current", Revision: head},
		{Name: "uncounted", Revision: strings.Repeat("d", 40), Head: head, BranchAhead: -1},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"aaaaaaaaaaaa (pinned)  1 commit ahead (head bbbbbbbbbbbb)",
		"cccccccccccc (held)    3 commits ahead (head bbbbbbbbbbbb)",
		"bbbbbbbbbbbb           at head",
		"dddddddddddd           not at head bbbbbbbbbbbb (commits not counted)",
	} {
		if !strings.Contains(b.String(), want) {
			t.Errorf("status lacks %q:\n%s", want, b.String())
		}
	}
}
