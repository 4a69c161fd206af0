package engine_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/gitopsd/gitopsd/internal/engine"
	"github.com/gitopsd/gitopsd/internal/testenv"
)

// TestRegistryPullSaysWhyItFailed pulls from a private registry without
// credentials, with them, a tag it lacks, and with the registry stopped:
// each failure names the image and the registry and says why.
func TestRegistryPullSaysWhyItFailed(t *testing.T) {
	testenv.Docker(t)
	reg := testenv.StartRegistry(t)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	ref, id := reg.PushApp(t, testenv.UniqueName(t, "engine")+"/app:v1", "v1")
	reg.RemoveLocal(t, ref)

	open := func(dockerConfig string) *engine.Engine {
		e, err := engine.New(ctx, engine.WithDockerConfig(dockerConfig))
		if err != nil {
			t.Fatalf("engine: %v", err)
		}
		t.Cleanup(func() { e.Close() })
		return e
	}
	fails := func(e *engine.Engine, image string, why error) {
		t.Helper()
		_, err := e.PullImage(ctx, image)
		prefix := "pull image " + image + " from registry " + reg.Host + ": " + why.Error()
		if !errors.Is(err, why) || !strings.HasPrefix(err.Error(), prefix) {
			t.Fatalf("pull %s: %v; want an error starting %q", image, err, prefix)
		}
		if strings.Contains(err.Error(), reg.Password) {
			t.Fatal("the error shows the password")
		}
	}

	anonymous := open(t.TempDir() + "/absent.json")
	fails(anonymous, ref, engine.ErrPullUnauthorized)

	loggedIn := open(testenv.WriteDockerConfig(t, "http://"+reg.Host, reg.User, reg.Password))
	got, err := loggedIn.PullImage(ctx, ref)
	if err != nil || got != id {
		t.Fatalf("pull with credentials: %q, %v; want %s", got, err, id)
	}
	fails(loggedIn, strings.TrimSuffix(ref, ":v1")+":absent", engine.ErrPullNotFound)

	reg.Stop()
	fails(loggedIn, ref, engine.ErrPullUnreachable)
}
