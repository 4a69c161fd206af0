package daemon

import (
	"bytes"
	"context"
	"database/sql"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	gosync "sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/gitopsd/gitopsd/internal/api"
	"github.com/gitopsd/gitopsd/internal/sync"
	"github.com/gitopsd/gitopsd/internal/testenv"
)

// TestStalledSourceKeepsHealing (issue 16, break 2): a Git server that
// accepts connections and never answers. The fetch runs beside the loop, so
// a stopped container is healed while the fetch hangs, status answers and
// says a fetch is in flight, the fetch fails at source.timeout with the
// error in status and the fetch-errors counter, and `sync --wait` returns
// that error instead of blocking.
func TestStalledSourceKeepsHealing(t *testing.T) {
	var proxy *stallProxy
	h := newLoopHarness(t, func(r *testenv.GitRepo) string {
		proxy = newStallProxy(t, r.ServeHTTP(t, ""))
		return proxy.url
	}, func(h *harness) { h.cfg.Source.Timeout = 10 * time.Second })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	proxy.stall()
	stalledAt := time.Now()
	h.d.wantSync(sync.TriggerPoll) // what the poll timer does
	waitStatus(t, h.api, "a fetch in flight", 10*time.Second, func(st api.Status) bool { return st.Source.FetchingSince != "" })

	stopped := h.stopWeb(ctx)
	took := h.servesWithin(stopped, 30*time.Second, "heal during a stalled fetch")
	st, err := h.api.Status(ctx, "")
	if err != nil {
		t.Fatalf("status during a stalled fetch: %v", err)
	}
	if st.Source.FetchingSince == "" {
		t.Fatalf("the heal (%s after the stop) came only after the stalled fetch ended: status %+v", took, st.Source)
	}
	t.Logf("healed %s after the stop, while the fetch hung", took.Round(time.Millisecond))
	if os.Getenv(testenv.AloneEnv) == "1" && took > healBound {
		t.Fatalf("the heal took %s during a stalled fetch, want at most %s", took, healBound)
	}

	// The deadline passes: status and the counter say so.
	st = waitStatus(t, h.api, "the fetch error", 30*time.Second, func(st api.Status) bool { return st.Source.Error != "" })
	if !strings.Contains(st.Source.Error, "no answer within 10s") || st.Source.FetchingSince != "" {
		t.Fatalf("source after the deadline: %+v", st.Source)
	}
	t.Logf("source.error %s after the stall: %s", time.Since(stalledAt).Round(time.Millisecond), st.Source.Error)
	if v := h.metric("gitopsd_source_fetch_errors_total"); v == "" || v == "0" {
		t.Fatalf("gitopsd_source_fetch_errors_total = %q after a timed-out fetch", v)
	}

	// sync --wait fetches again, and returns the error instead of hanging.
	err = h.api.Sync(ctx, "", false, true)
	if err == nil || !strings.Contains(err.Error(), "no answer within") {
		t.Fatalf("sync --wait with a stalled source: %v", err)
	}
	if ctx.Err() != nil {
		t.Fatal("sync --wait blocked until the test's own deadline")
	}
}

// TestStalledSourceAtStartKeepsHealing: gitopsd restarts while its Git
// server hangs. The first fetch hangs, yet a stopped container is healed
// meanwhile: drift checks use the last revision fetched until it returns.
func TestStalledSourceAtStartKeepsHealing(t *testing.T) {
	var proxy *stallProxy
	h := &driftHarness{harness: newHarness(t, func(r *testenv.GitRepo) string {
		proxy = newStallProxy(t, r.ServeHTTP(t, ""))
		return proxy.url
	})}
	h.stack, h.port = testenv.Project(t, "boot"), testenv.FreePort(t)
	h.repo.Commit(t, "v1", map[string]string{"stacks/" + h.stack + "/compose.yaml": driftStack(h.image, h.port, "heal", false)})
	h.mustReconcile()
	if got, err := waitServes(h.port, "v1", 10*time.Second); err != nil {
		t.Fatalf("v1 serves %q, %v", got, err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	h.stop()
	h.cfg.Source.Timeout = 20 * time.Second
	h.cfg.Drift.CheckInterval = time.Second
	proxy.stall()
	h.start()
	h.api = runDaemon(t, h.harness)
	waitStatus(t, h.api, "a fetch in flight", 10*time.Second, func(st api.Status) bool { return st.Source.FetchingSince != "" })

	stopped := h.stopWeb(ctx)
	took := h.servesWithin(stopped, 30*time.Second, "heal during the first, stalled fetch")
	st, err := h.api.Status(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if st.Source.FetchingSince == "" {
		t.Fatalf("the heal (%s after the stop) came only after the stalled first fetch ended: %+v", took, st.Source)
	}
	t.Logf("healed %s after the stop, while the first fetch hung", took.Round(time.Millisecond))
}

// TestFullStateDirKeepsHealing (issue 16, break 3): with state_dir full, a
// stopped container is still healed; status holds the store error (from
// memory), gitopsd_store_writable is 0 and the error is logged once, not at
// every check. Once there is room again the error clears.
func TestFullStateDirKeepsHealing(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("mounting a tmpfs state_dir needs root")
	}
	var logs syncBuffer
	var dir string
	h := newLoopHarness(t, nil, func(h *harness) {
		dir = mountTmpfs(t, "32m")
		h.cfg.StateDir, h.cfg.Socket = dir, filepath.Join(dir, "gitopsd.sock")
		h.logTo = &logs
	})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	fill := fillDisk(t, dir)
	checks := h.d.fullChecks.Load()
	stopped := h.stopWeb(ctx)
	took := h.servesWithin(stopped, 30*time.Second, "heal with a full state_dir")
	t.Logf("healed %s after the stop, with state_dir full", took.Round(time.Millisecond))

	st := waitStatus(t, h.api, "the store error", 10*time.Second, func(st api.Status) bool { return st.StoreError != "" })
	if !strings.Contains(st.StoreError, "full") || st.StoreErrorSince == "" {
		t.Fatalf("status with a full state_dir: store_error %q since %q", st.StoreError, st.StoreErrorSince)
	}
	if v := h.metric("gitopsd_store_writable"); v != "0" {
		t.Fatalf("gitopsd_store_writable = %q with a full state_dir", v)
	}
	if v := h.metric("gitopsd_store_errors_total"); v == "" || v == "0" {
		t.Fatalf("gitopsd_store_errors_total = %q with a full state_dir", v)
	}
	// Several checks (one a second) fail to write; the log says it once.
	waitFor30s(t, "three full drift checks", func() bool { return h.d.fullChecks.Load() >= checks+3 })
	if n := strings.Count(logs.String(), "cannot write the store"); n != 1 {
		t.Fatalf("the full store was logged %d times over several checks, want once a minute:\n%s", n, logs.String())
	}

	if err := os.Remove(fill); err != nil {
		t.Fatal(err)
	}
	waitStatus(t, h.api, "the store error to clear", 30*time.Second, func(st api.Status) bool { return st.StoreError == "" })
	if v := h.metric("gitopsd_store_writable"); v != "1" {
		t.Fatalf("gitopsd_store_writable = %q once there is room again", v)
	}
}

// TestReconcileErrorIsReported (issue 16, break 4): a reconcile that fails
// for every stack (here: the revisions table is gone, as a damaged database
// page would make it) is logged, shown in status' error and counted in
// gitopsd_reconcile_errors_total; once the store is whole the next poll
// deploys and the error clears.
func TestReconcileErrorIsReported(t *testing.T) {
	var logs syncBuffer
	h := newLoopHarness(t, nil, func(h *harness) { h.logTo = &logs })
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()

	db, err := sql.Open("sqlite", "file:"+filepath.Join(h.cfg.StateDir, "gitopsd.db")+"?_pragma=busy_timeout(10000)")
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.ExecContext(ctx, `ALTER TABLE revisions RENAME TO revisions_damaged`); err != nil {
		t.Fatal(err)
	}
	v2 := h.repo.Commit(t, "v2", map[string]string{"stacks/" + h.stack + "/compose.yaml": driftStack(h.image, h.port, "heal", false) + "# v2\n"})
	h.d.wantSync(sync.TriggerPoll)
	st := waitStatus(t, h.api, "the reconcile error", 30*time.Second, func(st api.Status) bool { return st.Error != "" })
	if !strings.Contains(st.Error, "revisions") || st.ErrorAt == "" {
		t.Fatalf("status error %q at %q, want the record of the revision named", st.Error, st.ErrorAt)
	}
	if !strings.Contains(logs.String(), "reconcile failed") {
		t.Fatalf("the failed reconcile was not logged:\n%s", logs.String())
	}
	if v := h.metric("gitopsd_reconcile_errors_total"); v == "" || v == "0" {
		t.Fatalf("gitopsd_reconcile_errors_total = %q after a failed reconcile", v)
	}

	if _, err := db.ExecContext(ctx, `ALTER TABLE revisions_damaged RENAME TO revisions`); err != nil {
		t.Fatal(err)
	}
	if err := h.api.Sync(ctx, "", false, true); err != nil {
		t.Fatalf("sync once the store is whole: %v", err)
	}
	st, err = h.api.Status(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	if st.Error != "" || st.Source.Head != v2 || len(st.Stacks) != 1 || st.Stacks[0].Revision != v2 {
		t.Fatalf("after the store was mended: error %q, head %s, stacks %+v", st.Error, st.Source.Head, st.Stacks)
	}
}

// TestTriggersCoalesce: a burst of webhook posts costs a few reconciles,
// not one each; triggers that arrive while one is queued merge into it, and
// one reconcile still runs after the last post. Counted by
// gitopsd_sync_total of the (unchanged) stack: one per reconcile.
func TestTriggersCoalesce(t *testing.T) {
	var addr string
	h := newLoopHarness(t, nil, func(h *harness) { addr = h.listenWebhook("s3cret") })
	series := fmt.Sprintf(`gitopsd_sync_total{result="unchanged",stack=%q}`, h.stack)
	count := func() int {
		n, _ := strconv.Atoi(h.metric(series))
		return n
	}
	before := count()
	const posts, senders, maxReconciles = 300, 10, 10
	var wg gosync.WaitGroup
	began := time.Now()
	for range senders {
		wg.Go(func() {
			for range posts / senders {
				if code := postPush(t, addr, "s3cret"); code != http.StatusAccepted {
					t.Errorf("webhook got %d", code)
					return
				}
			}
		})
	}
	wg.Wait()
	burst := time.Since(began)
	afterLast := count()
	waitFor30s(t, "a reconcile after the last post", func() bool { return count() > afterLast })
	// A sync that waits runs after whatever the posts queued; its own
	// reconcile is not theirs.
	if err := h.api.Sync(context.Background(), "", false, true); err != nil {
		t.Fatal(err)
	}
	got := count() - before - 1
	t.Logf("%d webhook posts in %s made %d reconciles", posts, burst.Round(time.Millisecond), got)
	if got > maxReconciles {
		t.Fatalf("%d webhook posts made %d reconciles, want them merged (at most %d)", posts, got, maxReconciles)
	}
}

// TestParallelSyncsShareAReconcile: many `sync --wait` calls at once (the
// issue's 50 parallel CLI calls) all get their answer, from a few
// reconciles: alike syncs that wait for the same fetch run once.
func TestParallelSyncsShareAReconcile(t *testing.T) {
	h := newLoopHarness(t, nil, nil)
	series := fmt.Sprintf(`gitopsd_sync_total{result="unchanged",stack=%q}`, h.stack)
	count := func() int {
		n, _ := strconv.Atoi(h.metric(series))
		return n
	}
	before := count()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	const calls, maxReconciles = 50, 10
	var wg gosync.WaitGroup
	for range calls {
		wg.Go(func() {
			if err := h.api.Sync(ctx, h.stack, false, true); err != nil {
				t.Errorf("sync --wait: %v", err)
			}
		})
	}
	wg.Wait()
	got := count() - before
	t.Logf("%d parallel syncs made %d reconciles", calls, got)
	if got < 1 || got > maxReconciles {
		t.Fatalf("%d parallel syncs made %d reconciles, want 1 to %d", calls, got, maxReconciles)
	}
}

// newLoopHarness is a driftHarness (daemon loop, full checks every second,
// metrics) whose source URL comes from url (nil: the bare repository) and
// whose configuration setup changes before the daemon opens.
func newLoopHarness(t *testing.T, url func(*testenv.GitRepo) string, setup func(*harness)) *driftHarness {
	t.Helper()
	h := &driftHarness{harness: newHarness(t, url)}
	h.stop()
	if setup != nil {
		setup(h.harness)
	}
	h.stack = testenv.Project(t, "loop")
	h.port = testenv.FreePort(t)
	h.metrics = fmt.Sprintf("127.0.0.1:%d", testenv.FreePort(t))
	h.cfg.Metrics = h.metrics
	h.cfg.Drift.CheckInterval = time.Second
	h.start()
	h.repo.Commit(t, "v1", map[string]string{"stacks/" + h.stack + "/compose.yaml": driftStack(h.image, h.port, "heal", false)})
	h.api = runDaemon(t, h.harness)
	if err := h.api.Sync(context.Background(), "", false, true); err != nil {
		t.Fatalf("first sync: %v", err)
	}
	if got, err := waitServes(h.port, "v1", 10*time.Second); err != nil {
		t.Fatalf("v1 serves %q, %v", got, err)
	}
	return h
}

// stopWeb stops the stack's web container as an operator would and returns
// when it was stopped.
func (h *driftHarness) stopWeb(ctx context.Context) time.Time {
	h.t.Helper()
	if _, err := h.docker.ContainerStop(ctx, h.web(), client.ContainerStopOptions{}); err != nil {
		h.t.Fatal(err)
	}
	return time.Now()
}

// waitStatus polls status until cond holds.
func waitStatus(t *testing.T, c *api.Client, what string, within time.Duration, cond func(api.Status) bool) api.Status {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := c.Status(ctx, "")
		cancel()
		if err != nil {
			t.Fatalf("status while waiting for %s: %v", what, err)
		}
		if cond(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("waited %s for %s in vain: %+v", within, what, st)
		}
		time.Sleep(50 * time.Millisecond) // polling the API: the condition has no event of its own
	}
}

func waitFor30s(t *testing.T, what string, cond func() bool) {
	t.Helper()
	waitUntil(t, what, 30*time.Second, cond)
}

// stallProxy forwards TCP to a backend until stall; from then on it
// accepts connections and never answers, as a hung Git server does.
type stallProxy struct {
	url     string
	backend string // host:port
	stalled atomic.Bool
	mu      gosync.Mutex
	conns   map[net.Conn]bool
}

func newStallProxy(t *testing.T, backendURL string) *stallProxy {
	t.Helper()
	rest, ok := strings.CutPrefix(backendURL, "http://")
	if !ok {
		t.Fatalf("backend %s is not http://", backendURL)
	}
	hostPort, path, _ := strings.Cut(rest, "/")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &stallProxy{url: "http://" + ln.Addr().String() + "/" + path, backend: hostPort, conns: map[net.Conn]bool{}}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			p.track(c, true)
			go p.serve(c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		p.closeAll()
	})
	return p
}

func (p *stallProxy) track(c net.Conn, add bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if add {
		p.conns[c] = true
	} else {
		delete(p.conns, c)
	}
}

func (p *stallProxy) serve(c net.Conn) {
	defer func() { c.Close(); p.track(c, false) }()
	if p.stalled.Load() {
		_, _ = io.Copy(io.Discard, c) // read what the client sends, never answer
		return
	}
	b, err := net.Dial("tcp", p.backend)
	if err != nil {
		return
	}
	defer b.Close()
	go func() { _, _ = io.Copy(b, c); b.Close() }()
	_, _ = io.Copy(c, b)
}

// stall makes every later connection hang, and drops the open ones so a
// kept-alive connection cannot carry the next fetch.
func (p *stallProxy) stall() {
	p.stalled.Store(true)
	p.closeAll()
}

func (p *stallProxy) closeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for c := range p.conns {
		c.Close()
	}
}

// mountTmpfs mounts a tmpfs of size under a test folder, unmounted when
// the test ends (after the daemon closed: registered before it starts).
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, "size="+size); err != nil {
		t.Fatalf("mount a tmpfs at %s: %v", dir, err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// fillDisk writes a file in dir until the file system is full and returns
// its path.
func fillDisk(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "fill")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := bytes.Repeat([]byte{0xff}, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("fill %s: %v", dir, err)
			}
			break
		}
	}
	// Whatever pages are left go too.
	for _, n := range []int{4096, 512, 1} {
		for {
			if _, err := f.Write(chunk[:n]); err != nil {
				break
			}
		}
	}
	return path
}

// syncBuffer is a log sink the daemon writes from several goroutines.
type syncBuffer struct {
	mu  gosync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
