package daemon

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"path/filepath"
	"strings"
	gosync "sync"
	"testing"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/events"
	"github.com/moby/moby/api/types/network"
	"github.com/moby/moby/client"

	"github.com/gitopsd/gitopsd/internal/config"
	"github.com/gitopsd/gitopsd/internal/testenv"
)

// What the roll benchmarks (roll_bench_test.go) run on: a gitopsd per
// iteration, a load of clients on the service rolled, and watches of the
// gate's events and of what the service answers.

// benchEnv is what the iterations of one benchmark share: the engine and
// the test app's image. Everything else is made per iteration.
type benchEnv struct {
	docker *client.Client
	image  string
}

func newBenchEnv(b *testing.B) *benchEnv {
	b.Helper()
	e := &benchEnv{docker: testenv.Docker(b)}
	// A tag of its own: AppImage removes it when this benchmark ends, and
	// packages running in parallel must not share one.
	e.image = testenv.AppImage(b, "gitopsd-bench-daemon:"+testenv.UniqueName(b, "v"))
	return e
}

// benchDaemon is one gitopsd over its own repository and state, so an
// iteration never meets what an earlier one left (a failed revision, a
// stack it would still converge).
type benchDaemon struct {
	repo     *testenv.GitRepo
	d        *Daemon
	closeErr func() error
}

func (e *benchEnv) newDaemon(b *testing.B) *benchDaemon {
	b.Helper()
	repo := testenv.NewGitRepo(b)
	cfg := config.Default()
	cfg.Source.URL = repo.Bare
	cfg.Host.Name = "benchhost"
	cfg.StateDir = b.TempDir()
	cfg.Socket = filepath.Join(cfg.StateDir, "gitopsd.sock")
	cfg.Metrics = ""
	d, err := New(context.Background(), cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		b.Fatalf("start daemon: %v", err)
	}
	// Closed at the iteration's end, and on a failure by the cleanup.
	bd := &benchDaemon{repo: repo, d: d, closeErr: gosync.OnceValue(d.Close)}
	b.Cleanup(func() { _ = bd.closeErr() })
	return bd
}

func (bd *benchDaemon) reconcile() error {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	return bd.d.reconcile(ctx, "poll", "")
}

func (bd *benchDaemon) close(b *testing.B) {
	if err := bd.closeErr(); err != nil {
		b.Errorf("close daemon: %v", err)
	}
}

// removeProject removes a project's containers and networks at the end of
// its iteration, so their healthchecks do not share the CPU with the next
// one; CleanupProjects stays registered for iterations that fail.
func (e *benchEnv) removeProject(b *testing.B, project string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	f := make(client.Filters).Add("label", "com.docker.compose.project="+project)
	var errs []error
	ctrs, err := e.docker.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: f})
	if err != nil {
		errs = append(errs, fmt.Errorf("list containers: %w", err))
	}
	for _, c := range ctrs.Items {
		_, err := e.docker.ContainerRemove(ctx, c.ID, client.ContainerRemoveOptions{Force: true})
		if err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove container %s: %w", c.ID[:12], err))
		}
	}
	nets, err := e.docker.NetworkList(ctx, client.NetworkListOptions{Filters: f})
	if err != nil {
		errs = append(errs, fmt.Errorf("list networks: %w", err))
	}
	for _, n := range nets.Items {
		if _, err := e.docker.NetworkRemove(ctx, n.ID, client.NetworkRemoveOptions{}); err != nil && !cerrdefs.IsNotFound(err) {
			errs = append(errs, fmt.Errorf("remove network %s: %w", n.Name, err))
		}
	}
	if err := errors.Join(errs...); err != nil {
		b.Errorf("remove project %s: %v", project, err)
	}
}

// loadClient is testapp's load mode in a container on a project's default
// network, requesting the service by name as a neighbour service would.
type loadClient struct {
	cli *client.Client
	id  string
	d   time.Duration // how long it sends requests
}

// startLoad starts a load client for d against project's web service;
// connectTimeout 0 leaves Go's plain dialer.
func (e *benchEnv) startLoad(b *testing.B, project string, d, connectTimeout time.Duration) *loadClient {
	ctx := context.Background()
	netName := project + "_default"
	cmd := []string{"load", "http://web:8080/", "--duration", d.String(), "--interval", "10ms"}
	if connectTimeout > 0 {
		cmd = append(cmd, "--connect-timeout", connectTimeout.String())
	}
	res, err := e.docker.ContainerCreate(ctx, client.ContainerCreateOptions{
		Config: &container.Config{
			// A TTY makes the logs the plain JSON line, without stream headers.
			Image: e.image, Tty: true, Cmd: cmd,
			Labels: map[string]string{testenv.TestLabel: "1"},
		},
		HostConfig: &container.HostConfig{NetworkMode: container.NetworkMode(netName)},
		NetworkingConfig: &network.NetworkingConfig{EndpointsConfig: map[string]*network.EndpointSettings{
			netName: {},
		}},
	})
	if err != nil {
		b.Fatalf("create load client on %s: %v", netName, err)
	}
	l := &loadClient{cli: e.docker, id: res.ID, d: d}
	// Registered after CleanupProjects, so on a failure it goes before the
	// network it is attached to.
	b.Cleanup(func() { _ = l.removeErr() })
	if _, err := e.docker.ContainerStart(ctx, res.ID, client.ContainerStartOptions{}); err != nil {
		b.Fatalf("start load client on %s: %v", netName, err)
	}
	return l
}

// result waits for the load to end and returns what it counted.
func (l *loadClient) result(ctx context.Context) (loadResult, error) {
	wctx, cancel := context.WithTimeout(ctx, l.d+time.Minute)
	defer cancel()
	w := l.cli.ContainerWait(wctx, l.id, client.ContainerWaitOptions{Condition: container.WaitConditionNotRunning})
	select {
	case err := <-w.Error:
		return loadResult{}, fmt.Errorf("wait for the load client: %w", err)
	case <-w.Result:
	}
	logs, err := l.cli.ContainerLogs(ctx, l.id, client.ContainerLogsOptions{ShowStdout: true})
	if err != nil {
		return loadResult{}, fmt.Errorf("logs of the load client: %w", err)
	}
	defer logs.Close()
	out, err := io.ReadAll(logs)
	if err != nil {
		return loadResult{}, fmt.Errorf("read logs of the load client: %w", err)
	}
	var lr loadResult
	if err := json.Unmarshal([]byte(strings.TrimSpace(string(out))), &lr); err != nil {
		return loadResult{}, fmt.Errorf("load client output %q: %w", out, err)
	}
	return lr, nil
}

func (l *loadClient) removeErr() error {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	_, err := l.cli.ContainerRemove(ctx, l.id, client.ContainerRemoveOptions{Force: true})
	if err != nil && !cerrdefs.IsNotFound(err) {
		return fmt.Errorf("remove load client %s: %w", l.id[:12], err)
	}
	return nil
}

func (l *loadClient) remove(b *testing.B) {
	if err := l.removeErr(); err != nil {
		b.Error(err)
	}
}

// gateWatch follows a project's containers on Docker's event stream; the
// engine's timestamps say when the new container's gate failed and when
// the old container was started again, without the lag of a poll. On a
// busy host Docker's start of the old container is most of the way back,
// so it is timed apart.
type gateWatch struct {
	mu   gosync.Mutex
	seen gateEvents
	// failedAt receives the time of the verdict, once.
	failedAt chan time.Time
}

type gateEvents struct {
	failed, oldRenamed, oldStarted time.Time
	err                            error // why the stream ended early, if it did
}

func (w *gateWatch) get() gateEvents {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.seen
}

// watchGate subscribes before the roll starts, so no event is missed (Events
// returns once subscribed; an error ends the stream and is kept in err);
// old is the container that serves v1.
func watchGate(ctx context.Context, cli *client.Client, project, old string) *gateWatch {
	f := make(client.Filters).Add("type", "container").Add("label", "com.docker.compose.project="+project)
	stream := cli.Events(ctx, client.EventsListOptions{Filters: f})
	w := &gateWatch{failedAt: make(chan time.Time, 1)}
	go func() {
		for {
			select {
			case err := <-stream.Err:
				if ctx.Err() == nil {
					w.mu.Lock()
					w.seen.err = fmt.Errorf("event stream ended: %w", err)
					w.mu.Unlock()
				}
				return
			case m := <-stream.Messages:
				at := time.Unix(0, m.TimeNano)
				w.mu.Lock()
				switch {
				case m.Actor.ID != old && w.seen.failed.IsZero() &&
					(m.Action == events.ActionHealthStatusUnhealthy || m.Action == events.ActionDie):
					// The first of the two is the verdict: a container
					// removed after an unhealthy verdict dies too.
					w.seen.failed = at
					w.failedAt <- at
				case m.Actor.ID == old && !w.seen.failed.IsZero() && w.seen.oldRenamed.IsZero() && m.Action == events.ActionRename:
					// gitopsd renames the parked container back, then starts it.
					w.seen.oldRenamed = at
				case m.Actor.ID == old && !w.seen.failed.IsZero() && w.seen.oldStarted.IsZero() && m.Action == events.ActionStart:
					w.seen.oldStarted = at
				}
				w.mu.Unlock()
			}
		}
	}()
	return w
}

// pollServes requests the port every pollEvery until ctx ends, and sends
// the time of the first answer want received after the time that arrives
// on since. Answers are kept from the start, since that time may arrive
// after the answer it precedes.
func pollServes(ctx context.Context, port int, want string, since <-chan time.Time) <-chan time.Time {
	out := make(chan time.Time, 1)
	// A new connection per request, as a new client would make; a kept-alive
	// one could outlive the container it was made to.
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	go func() {
		var answered []time.Time
		var from time.Time
		tick := time.NewTicker(pollEvery)
		defer tick.Stop()
		for {
			if from.IsZero() {
				select {
				case from = <-since:
				default:
				}
			}
			if body, err := getBody(ctx, c, url); err == nil && body == want {
				answered = append(answered, time.Now())
			}
			if !from.IsZero() {
				for _, at := range answered {
					if at.After(from) {
						out <- at
						return
					}
				}
				answered = answered[:0]
			}
			select {
			case <-ctx.Done():
				return
			case <-tick.C:
			}
		}
	}()
	return out
}

// getBody returns the trimmed body of a 200 answer.
func getBody(ctx context.Context, c *http.Client, url string) (string, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return "", err
	}
	resp, err := c.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return "", fmt.Errorf("read %s: %w", url, err)
	}
	if resp.StatusCode != http.StatusOK {
		return "", fmt.Errorf("get %s: %s", url, resp.Status)
	}
	return strings.TrimSpace(string(body)), nil
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
