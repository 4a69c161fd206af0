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
    error: recreate app#1:
           unhealthy
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

// TestPrintStatusRolloutHold: a stack the fleet's rollout holds says so,
// and why, where an error would be.
func TestPrintStatusRolloutHold(t *testing.T) {
	var b bytes.Buffer
	hold := "held by rollout: 222222222222 rolled back on edge-00 (canary)"
	if err := printStatus(&b, api.Status{Host: "edge-01", Stacks: []api.StackStatus{
		{Name: "web", Revision: strings.Repeat("1", 40), Sync: "OutOfSync", Hold: hold},
	}}); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "OutOfSync") || !strings.Contains(b.String(), hold) {
		t.Errorf("status does not show the hold:\n%s", b.String())
	}
}

func TestPrintStatusRemoteCopyFailing(t *testing.T) {
	var b bytes.Buffer
	if err := printStatus(&b, api.Status{Host: "edge-01", Stacks: []api.StackStatus{
		{Name: "shop", Sync: "Synced", Backups: []api.BackupBrief{
			{Volume: "db", RemotePending: 2, RemoteLastError: "dial tcp 127.0.0.1:9: connection refused", RemoteLastErrorAt: "2026-01-02T03:04:05Z"},
			{Volume: "media", RemotePending: 0, RemoteLastSuccess: "2026-01-02T03:00:00Z"},
		}},
	}}); err != nil {
		t.Fatal(err)
	}
	want := "remote copy of shop/db failing since 2026-01-02T03:04:05Z (2 pending, last copy never): dial tcp 127.0.0.1:9: connection refused\n"
	if !strings.HasSuffix(b.String(), want) || strings.Contains(b.String(), "shop/media") {
		t.Errorf("status does not name the failing remote copy alone:\n%s", b.String())
	}
}

func TestPrintDriftOpenFirst(t *testing.T) {
	var b bytes.Buffer
	err := printDrift(&b, []api.Drift{
		{ID: 3, Stack: "web", Kind: "behind", Detail: "pinned at 1111", OpenedAt: "2026-01-02T03:04:07Z"},
		{ID: 2, Stack: "web", Service: "app", Container: "web-app-1", Kind: "stopped", Detail: "container exited", OpenedAt: "2026-01-02T03:04:06Z", ClosedAt: "2026-01-02T03:04:08Z", ClosedBy: "healed"},
		{ID: 1, Stack: "web", Service: "app", Container: "web-app-2", Kind: "modified", Detail: "differs in env VERSION", OpenedAt: "2026-01-02T03:04:05Z"},
	})
	if err != nil {
		t.Fatal(err)
	}
	want := `ID  STACK  SERVICE  CONTAINER  KIND      OPENED                CLOSED                         DETAIL
3   web    -        -          behind    2026-01-02T03:04:07Z  open                           pinned at 1111
1   web    app      web-app-2  modified  2026-01-02T03:04:05Z  open                           differs in env VERSION
2   web    app      web-app-1  stopped   2026-01-02T03:04:06Z  2026-01-02T03:04:08Z (healed)  container exited
`
	if got := b.String(); got != want {
		t.Fatalf("drift:\n%s\nwant:\n%s", got, want)
	}
	b.Reset()
	if err := printDrift(&b, nil); err != nil || b.String() != "no drift\n" {
		t.Fatalf("no drift: %q %v", b.String(), err)
	}
}

// TestPrintStatusRestored: how a volume a deployment created was filled
// (restore: if_empty) shows under the table.
func TestPrintStatusRestored(t *testing.T) {
	var b bytes.Buffer
	err := printStatus(&b, api.Status{Host: "shop-1", Stacks: []api.StackStatus{{Name: "shop", Backups: []api.BackupBrief{
		{Volume: "data", Restored: "2026-12-06T06:00:00Z: restored snapshot 1 (remote s3://s3:9000/b/shop-1/shop/data/x), taken 2026-12-06T03:00:00Z, 3h0m0s old"},
		{Volume: "cache"},
	}}}})
	if err != nil {
		t.Fatal(err)
	}
	if want := "volume data of shop, created by a deployment (restore: if_empty): 2026-12-06T06:00:00Z: restored snapshot 1"; !strings.Contains(b.String(), want) {
		t.Errorf("status lacks %q:\n%s", want, b.String())
	}
	if strings.Contains(b.String(), "volume cache") {
		t.Errorf("status names a volume no deployment filled:\n%s", b.String())
	}
}
