package engine_test

import (
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/compose-spec/compose-go/v2/types"

	"github.com/gitopsd/gitopsd/internal/engine"
)

// TestFilesDigestStreamsBoundedFiles (issue 15, hole 5): FilesDigest hashes
// a secret's or config's host file as a stream and gives the digest it
// always gave (a changed digest would roll every such container on
// upgrade); it refuses a file over MaxFileObjectBytes, and a FIFO, without
// reading them.
func TestFilesDigestStreamsBoundedFiles(t *testing.T) {
	dir := t.TempDir()
	write := func(name, content string) string {
		p := filepath.Join(dir, name)
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
		return p
	}
	project := func(file string) (*types.Project, types.ServiceConfig) {
		svc := types.ServiceConfig{Name: "app", Configs: []types.ServiceConfigObjConfig{{Source: "c"}}}
		p := &types.Project{
			Services: types.Services{"app": svc},
			Configs:  types.Configs{"c": types.ConfigObjConfig{File: file}},
		}
		return p, svc
	}
	key := []byte("k")

	p, svc := project(write("small.conf", "key=value\n"))
	got, err := engine.FilesDigest(p, svc, key)
	if err != nil {
		t.Fatal(err)
	}
	mac := hmac.New(sha256.New, key)
	fmt.Fprintf(mac, "%s\x00%d\x00%s", "/c", len("key=value\n"), "key=value\n")
	if want := hex.EncodeToString(mac.Sum(nil)); got != want {
		t.Errorf("digest %s, want %s as before", got, want)
	}

	big := write("big.bin", "")
	if err := os.Truncate(big, engine.MaxFileObjectBytes+1); err != nil {
		t.Fatal(err)
	}
	p, svc = project(big)
	if _, err := engine.FilesDigest(p, svc, key); err == nil || !strings.Contains(err.Error(), "over the limit of 8388608") {
		t.Errorf("a config file over the limit: %v", err)
	}

	fifo := filepath.Join(dir, "pipe")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	p, svc = project(fifo)
	done := make(chan error, 1)
	go func() {
		_, err := engine.FilesDigest(p, svc, key)
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("a FIFO: %v", err)
		}
	case <-time.After(time.Minute):
		t.Fatal("FilesDigest waits on a FIFO")
	}
}
