package testenv

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/client"
)

// TestExtraEngine: an extra engine starts beside the machine's, runs a
// container of the test app on its own bridge, and leaves nothing behind:
// no folder, no bridge, and docker0 is still there.
func TestExtraEngine(t *testing.T) {
	var e *Engine
	t.Run("run", func(t *testing.T) {
		e = StartEngine(t)
		image := e.AppImage(t, "gitopsd-test-engine:v1")
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
		defer cancel()
		res, err := e.Client.ContainerCreate(ctx, client.ContainerCreateOptions{Name: "web",
			Config: &container.Config{Image: image, Labels: map[string]string{TestLabel: "1"}}})
		if err != nil {
			t.Fatalf("%v\n%s", err, e.Log())
		}
		if _, err := e.Client.ContainerStart(ctx, res.ID, client.ContainerStartOptions{}); err != nil {
			t.Fatalf("%v\n%s", err, e.Log())
		}
		c, err := e.Client.ContainerInspect(ctx, res.ID, client.ContainerInspectOptions{})
		if err != nil || !c.Container.State.Running {
			t.Fatalf("container on the extra engine: %v %+v", err, c.Container.State)
		}
		ip := ""
		for _, n := range c.Container.NetworkSettings.Networks {
			ip = n.IPAddress.String()
		}
		out, _ := exec.Command("ip", "-4", "-br", "addr", "show", e.Bridge).CombinedOutput()
		prefix := strings.Join(strings.Split(strings.Fields(string(out))[2], ".")[:3], ".") + "."
		if !strings.HasPrefix(ip, prefix) {
			t.Errorf("container address %s is not on bridge %s (%s)", ip, e.Bridge, out)
		}
		if _, err := Docker(t).ContainerInspect(ctx, res.ID, client.ContainerInspectOptions{}); err == nil {
			t.Errorf("the main engine sees the extra engine's container")
		}
	})
	if _, err := os.Stat(e.dir); !os.IsNotExist(err) {
		t.Errorf("engine folder %s left: %v", e.dir, err)
	}
	if err := exec.Command("ip", "link", "show", e.Bridge).Run(); err == nil {
		t.Errorf("bridge %s left", e.Bridge)
	}
	if out, err := exec.Command("ip", "link", "show", "docker0").CombinedOutput(); err != nil {
		t.Errorf("docker0 gone: %v %s", err, out)
	}
}
