package daemon

import (
	"strings"
	"testing"

	"github.com/gitopsd/gitopsd/internal/testenv"
)

// newHarnessOn is newHarness over an extra engine of the test instead of
// the machine's: the daemon reaches it through DOCKER_HOST, the harness
// through e.Client, and the app image is built on it.
func newHarnessOn(t *testing.T, e *testenv.Engine) *harness {
	t.Helper()
	t.Setenv("DOCKER_HOST", e.Host)
	h := &harness{t: t, docker: e.Client, repo: testenv.NewGitRepo(t)}
	h.image = e.AppImage(t, "gitopsd-test-daemon:"+strings.ToLower(testenv.UniqueName(t, "v")))
	h.configure(nil)
	return h
}

// TestEngineRestartQuickHeal is TestEngineRestart on an engine of the
// test's own, which it may stop and start while other tests run, with the
// quick heal armed (the stack's clean look taken) when the engine goes
// down. Going down, the engine stops every container as a `docker stop`
// would (kill, then die): no quick heal may start anything under its
// shutdown, and the stack converges after the engine is back, without
// duplicates: web (no restart policy) healed by gitopsd, worker (restart:
// always) started by the engine.
func TestEngineRestartQuickHeal(t *testing.T) {
	e := testenv.StartEngine(t)
	h := &driftHarness{harness: newHarnessOn(t, e)}
	engineRestarted(t, h, func() { e.Restart(t) })
}
