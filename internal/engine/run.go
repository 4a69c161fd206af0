package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	cerrdefs "github.com/containerd/errdefs"
	"github.com/gitopsd/gitopsd/internal/ids"
	"github.com/moby/moby/api/pkg/stdcopy"
	"github.com/moby/moby/api/types/container"
	"github.com/moby/moby/api/types/mount"
	"github.com/moby/moby/client"
)

// outputTail is how much of a command's output is kept for its error.
const outputTail = 2048

// Exec runs a command in a running container and returns its exit code
// and the tail of its output (stdout and stderr as Docker multiplexes them).
func (e *Engine) Exec(ctx context.Context, id string, cmd []string) (int, string, error) {
	return e.exec(ctx, id, client.ExecCreateOptions{Cmd: cmd})
}

func (e *Engine) exec(ctx context.Context, id string, opts client.ExecCreateOptions) (int, string, error) {
	opts.AttachStdout, opts.AttachStderr = true, true
	cmd := strings.Join(opts.Cmd, " ")
	ex, err := e.cli.ExecCreate(ctx, id, opts)
	if err != nil {
		return -1, "", fmt.Errorf("exec %q in %s: %w", cmd, ids.Short(id), err)
	}
	att, err := e.cli.ExecAttach(ctx, ex.ID, client.ExecAttachOptions{})
	if err != nil {
		return -1, "", fmt.Errorf("exec %q in %s: %w", cmd, ids.Short(id), err)
	}
	var out tailBuffer
	// Without a TTY the engine frames stdout and stderr; both go to out.
	_, _ = stdcopy.StdCopy(&out, &out, att.Reader) // ends when the command does
	att.Close()
	res, err := e.cli.ExecInspect(ctx, ex.ID, client.ExecInspectOptions{})
	if err != nil {
		return -1, out.String(), fmt.Errorf("exec %q in %s: %w", cmd, ids.Short(id), err)
	}
	return res.ExitCode, out.String(), nil
}

// Hook is one of compose's post_start or pre_stop hooks.
type Hook struct {
	Cmd        []string
	User       string
	Privileged bool
	WorkingDir string
	Env        []string
}

// HookError is a hook that ran and exited non-zero.
type HookError struct {
	Cmd    string
	Exit   int
	Output string // the tail
}

func (e *HookError) Error() string {
	msg := fmt.Sprintf("%q exited %d", e.Cmd, e.Exit)
	if out := strings.TrimSpace(e.Output); out != "" {
		msg += ": " + out
	}
	return msg
}

// ErrNotRunning: a hook was to run in a container that is not running.
var ErrNotRunning = errors.New("container is not running")

// RunHook execs h in the running container id, as compose runs a
// lifecycle hook; a non-zero exit is a *HookError, a container that is not
// running ErrNotRunning.
func (e *Engine) RunHook(ctx context.Context, id string, h Hook) error {
	code, out, err := e.exec(ctx, id, client.ExecCreateOptions{Cmd: h.Cmd, User: h.User, Privileged: h.Privileged, WorkingDir: h.WorkingDir, Env: h.Env})
	if cerrdefs.IsConflict(err) {
		return fmt.Errorf("%w: %w", ErrNotRunning, err)
	}
	if err != nil {
		return err
	}
	if code != 0 {
		return &HookError{Cmd: strings.Join(h.Cmd, " "), Exit: code, Output: out}
	}
	return nil
}

// OneOff is a container run once to completion, with no network.
type OneOff struct {
	Name    string
	Image   string
	Cmd     []string // the whole command line: it replaces the image's entrypoint and command
	Labels  map[string]string
	Volume  string // mounted at Target
	Target  string
	Timeout time.Duration
}

// RunOnce runs a one-off container to its end (killed after Timeout) and
// returns its exit code and the tail of its output. The container is
// always removed.
func (e *Engine) RunOnce(ctx context.Context, o OneOff) (int, string, error) {
	if err := ctx.Err(); err != nil {
		return -1, "", err
	}
	res, err := e.cli.ContainerCreate(context.WithoutCancel(ctx), client.ContainerCreateOptions{ // see helper
		Name:   o.Name,
		Config: &container.Config{Image: o.Image, Entrypoint: o.Cmd[:1], Cmd: o.Cmd[1:], Labels: o.Labels, NetworkDisabled: true},
		HostConfig: &container.HostConfig{
			NetworkMode: "none",
			Mounts:      []mount.Mount{{Type: mount.TypeVolume, Source: o.Volume, Target: o.Target}},
		},
	})
	if err != nil {
		return -1, "", fmt.Errorf("create %s: %w", o.Name, err)
	}
	defer func() { _ = e.RemoveContainer(context.WithoutCancel(ctx), res.ID) }()
	wctx, cancel := context.WithTimeout(ctx, o.Timeout)
	defer cancel()
	wait := e.cli.ContainerWait(wctx, res.ID, client.ContainerWaitOptions{Condition: container.WaitConditionNextExit})
	if err := e.StartContainer(ctx, res.ID); err != nil {
		return -1, "", err
	}
	code := -1
	select {
	case r := <-wait.Result:
		code = int(r.StatusCode)
	case err := <-wait.Error:
		if wctx.Err() != nil {
			err = fmt.Errorf("did not finish within %s", o.Timeout)
		}
		return -1, e.logsTail(ctx, res.ID), fmt.Errorf("%s: %w", o.Name, err)
	}
	return code, e.logsTail(ctx, res.ID), nil
}

func (e *Engine) logsTail(ctx context.Context, id string) string {
	rc, err := e.cli.ContainerLogs(ctx, id, client.ContainerLogsOptions{ShowStdout: true, ShowStderr: true, Tail: "20"})
	if err != nil {
		return ""
	}
	defer rc.Close()
	var out tailBuffer
	_, _ = io.Copy(&out, rc)
	return out.String()
}

// tailBuffer keeps the last outputTail bytes written to it, with Docker's
// 8-byte stream headers left in: it is for people, in an error message.
type tailBuffer struct {
	b   []byte
	cut bool // bytes were dropped from the front
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.b = append(t.b, p...)
	if len(t.b) > outputTail {
		t.b = t.b[len(t.b)-outputTail:]
		t.cut = true
	}
	return len(p), nil
}

// String drops the non-printable bytes of the stream headers and, when
// the front was cut, the rest of the line it was cut in: a line starts the
// tail whole, so a secret printed on it is whole too and is redacted as
// such (secrets.Redactor), not left as an unrecognisable end of itself.
func (t *tailBuffer) String() string {
	b := t.b
	if t.cut {
		if i := bytes.IndexByte(b, '\n'); i >= 0 {
			b = b[i+1:]
		}
	}
	return strings.TrimSpace(string(bytes.Map(func(r rune) rune {
		if r < 0x20 && r != '\n' && r != '\t' {
			return -1
		}
		return r
	}, b)))
}
