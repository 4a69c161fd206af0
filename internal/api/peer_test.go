package api

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

// clientEnv makes the test binary a client of the socket it names, run by
// TestSocketPermissions as another user.
const clientEnv = "GITOPSD_TEST_API_CLIENT"

func TestMain(m *testing.M) {
	if sock := os.Getenv(clientEnv); sock != "" {
		c := NewClient(sock)
		ctx := context.Background()
		_, err := c.Status(ctx, "")
		fmt.Printf("status: %v\n", errOrOK(err))
		fmt.Printf("rollback: %v\n", errOrOK(c.Rollback(ctx, "web", "", false, false)))
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func errOrOK(err error) string {
	if err == nil {
		return "ok"
	}
	return err.Error()
}

// peerBackend answers status and accepts rollbacks.
type peerBackend struct{ Backend }

func (peerBackend) Status(context.Context, string) (Status, error) { return Status{Host: "h"}, nil }
func (peerBackend) Rollback(context.Context, string, string, bool, bool) error {
	return nil
}

// TestSocketPermissions: the socket is 0660 and belongs to the socket
// group; a non-root member of the group reads (status) but cannot change
// anything (rollback), with a clear error; a user outside the group cannot
// connect at all.
func TestSocketPermissions(t *testing.T) {
	if os.Getuid() != 0 {
		t.Skip("needs root: it runs clients as other users (CI runs as root)")
	}
	old := SocketGroup
	SocketGroup = "users" // gid 100 on every Debian; the daemon's is "gitopsd"
	defer func() { SocketGroup = old }()

	dir, err := os.MkdirTemp("", "gitopsd-api-peer-")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(dir)
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	// The test binary, where another user can run it.
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(dir, "client")
	data, err := os.ReadFile(self)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(bin, data, 0o755); err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "api.sock")
	srv, err := Listen(sock, peerBackend{}, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	go srv.Serve() //nolint:errcheck // Shutdown ends it
	defer srv.Shutdown(context.Background())

	fi, err := os.Stat(sock)
	if err != nil {
		t.Fatal(err)
	}
	if st := fi.Sys().(*syscall.Stat_t); fi.Mode().Perm() != 0o660 || st.Gid != 100 {
		t.Fatalf("socket mode %v gid %d, want 0660 and group users (100)", fi.Mode().Perm(), st.Gid)
	}
	run := func(groups []uint32) string {
		cmd := exec.Command(bin, "-test.run=^$")
		cmd.Env = append(os.Environ(), clientEnv+"="+sock)
		cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534, Groups: groups}}
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("client: %v\n%s", err, out)
		}
		return string(out)
	}

	member := run([]uint32{100})
	if !strings.Contains(member, "status: ok") || !strings.Contains(member, "rollback: POST /v1/rollback changes gitopsd's state and needs root; uid 65534 may only read") {
		t.Fatalf("a member of the group:\n%s", member)
	}
	outsider := run(nil)
	if !strings.Contains(outsider, "status: cannot reach gitopsd") || !strings.Contains(outsider, "permission denied") {
		t.Fatalf("a user outside the group:\n%s", outsider)
	}
	// Root changes things.
	if err := NewClient(sock).Rollback(context.Background(), "web", "", false, false); err != nil {
		t.Fatalf("root: %v", err)
	}
}
