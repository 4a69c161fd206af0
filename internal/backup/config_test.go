package backup

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/gitopsd/gitopsd/internal/stack"
)

// load writes one stack with the given x-gitopsd.backup and loads it.
func load(t *testing.T, backupYAML string) *stack.Stack {
	t.Helper()
	root := t.TempDir()
	dir := filepath.Join(root, "stacks", "shop")
	if err := os.MkdirAll(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	file := "x-gitopsd:\n  backup:\n" + backupYAML + `
services:
  db:
    image: db:1
    volumes: ["data:/var/lib/db"]
  web:
    image: web:1
    depends_on: [db]
volumes:
  data: {}
`
	if err := os.WriteFile(filepath.Join(dir, "compose.yaml"), []byte(file), 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := stack.Load(context.Background(), root, "shop", stack.Host{Name: "h"})
	if err != nil {
		t.Fatalf("load: %v", err)
	}
	return st
}

func TestParseConfig(t *testing.T) {
	st := load(t, `    before_deploy: true
    volumes:
      data:
        schedule: "0 3 * * *"
        keep: {last: 3, daily: 7}
        stop: [db]
        test: "@weekly"
        verify: ["/app", "check", "/var/lib/db"]
        timeout: 30s
        restore: if_empty
`)
	c, err := ParseConfig(st)
	if err != nil {
		t.Fatal(err)
	}
	v := c.Volumes["data"]
	if !c.BeforeDeploy || v.Schedule == nil || v.Schedule.String() != "0 3 * * *" || v.Test == nil ||
		v.Keep.Last != 3 || v.Keep.Daily != 7 || v.Consistency != ConsistencyStop || v.Services[0] != "db" ||
		v.VerifyWith != "db" || v.TestLevel != 3 || v.Timeout.Seconds() != 30 || !v.IfEmpty {
		t.Fatalf("parsed %+v", v)
	}
	if v.Local || v.TestFrom != TestFromLocal {
		t.Fatalf("defaults: copied to the remote and tested locally, got local %v, test_from %q", v.Local, v.TestFrom)
	}
	if MountPoint(st, "db", "data") != "/var/lib/db" || MountPoint(st, "web", "data") != "" {
		t.Fatal("mount points")
	}
	if Validate(st) != nil {
		t.Fatal("a good config is valid")
	}
}

// TestParseRemoteKeys: remote: false keeps a volume on the host, and
// test_from: remote sends its scheduled tests to the remote copy.
func TestParseRemoteKeys(t *testing.T) {
	for _, tc := range []struct {
		yaml     string
		local    bool
		testFrom string
	}{
		{"data: {test_from: remote}", false, TestFromRemote},
		{"data: {remote: false}", true, TestFromLocal},
		{"data: {remote: true, test_from: local}", false, TestFromLocal},
	} {
		c, err := ParseConfig(load(t, "    volumes:\n      "+tc.yaml+"\n"))
		if err != nil {
			t.Fatalf("%s: %v", tc.yaml, err)
		}
		if v := c.Volumes["data"]; v.Local != tc.local || v.TestFrom != tc.testFrom {
			t.Errorf("%s: parsed local %v, test_from %q", tc.yaml, v.Local, v.TestFrom)
		}
	}
}

func TestParseConfigErrorsNameTheKey(t *testing.T) {
	for _, tc := range []struct{ yaml, want string }{
		{"    volumes:\n      data: {schedule: \"61 * * * *\"}\n", "x-gitopsd.backup.volumes.data.schedule: schedule \"61 * * * *\""},
		{"    volumes:\n      data: {stop: [nope]}\n", "x-gitopsd.backup.volumes.data.stop[0]: the stack has no service \"nope\""},
		{"    volumes:\n      other: {}\n", "x-gitopsd.backup.volumes.other: the stack declares no volume \"other\""},
		{"    volumes:\n      data: {keep: {yearly: 1}}\n", "x-gitopsd.backup.volumes.data.keep: unknown key \"yearly\""},
		{"    volumes:\n      data: {stop: [db], pause: [db]}\n", "only one of stop, pause and hook"},
		{"    volumes:\n      data: {test_level: 3}\n", "x-gitopsd.backup.volumes.data.test_level: 3 needs verify"},
		{"    recipients: [\"not-a-key\"]\n    volumes: {}\n", "x-gitopsd.backup.recipients[0]: not an age public key"},
		{"    volume: {}\n", "x-gitopsd.backup: unknown key \"volume\""},
		{"    volumes:\n      data: {remote: \"no\"}\n", "x-gitopsd.backup.volumes.data.remote: must be true or false"},
		{"    volumes:\n      data: {test_from: cloud}\n", "x-gitopsd.backup.volumes.data.test_from: must be local or remote"},
		{"    volumes:\n      data: {remote: false, test_from: remote}\n", "x-gitopsd.backup.volumes.data.test_from: remote needs the volume's copies on the remote"},
		{"    volumes:\n      data: {restore: always}\n", "x-gitopsd.backup.volumes.data.restore: must be if_empty"},
	} {
		_, err := ParseConfig(load(t, tc.yaml))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q:\n got %v\nwant %s", tc.yaml, err, tc.want)
		}
	}
	err := Validate(load(t, "    volume: {}\n"))
	if err == nil || !strings.HasPrefix(err.Error(), "stacks/shop/compose.yaml: x-gitopsd.backup") {
		t.Fatalf("Validate names the file: %v", err)
	}
}
