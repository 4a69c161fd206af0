package engine_test

import (
	"context"
	"errors"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gitopsd/gitopsd/internal/engine"
	"github.com/gitopsd/gitopsd/internal/testenv"
)

// TestPullOfASilentRegistryGivesUp (issue 16, break 2: every network
// operation has a deadline): a registry on 127.0.0.1 that answers the
// engine's ping and then never answers the manifest request. The pull
// fails as unreachable once it has made no progress for the stall period,
// instead of holding the deploy, and the loop, for good.
func TestPullOfASilentRegistryGivesUp(t *testing.T) {
	testenv.Docker(t)
	release := make(chan struct{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/v2/" {
			w.Header().Set("Docker-Distribution-API-Version", "registry/2.0")
			return
		}
		select { // the manifest and whatever follows: silence
		case <-release:
		case <-r.Context().Done():
		}
	}), ReadHeaderTimeout: 10 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() {
		close(release)
		srv.Close()
	})

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	e, err := engine.New(ctx, engine.WithDockerConfig(t.TempDir()+"/absent.json"), engine.WithPullStall(3*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	ref := ln.Addr().String() + "/" + strings.ToLower(testenv.UniqueName(t, "silent")) + "/app:v1"
	began := time.Now()
	_, err = e.PullImage(ctx, ref)
	t.Logf("pull of a silent registry: %s: %v", time.Since(began).Round(time.Millisecond), err)
	if ctx.Err() != nil {
		t.Fatal("the pull waited on the silent registry until the test's own deadline")
	}
	if !errors.Is(err, engine.ErrPullUnreachable) || !strings.Contains(err.Error(), "no progress for 3s") {
		t.Fatalf("pull of a silent registry: %v; want unreachable, no progress for 3s", err)
	}
}
