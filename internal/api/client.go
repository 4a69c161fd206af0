package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"syscall"
)

// Client talks to a running daemon over its socket. It is the only thing
// the subcommands know about the daemon.
type Client struct {
	socket string
	http   *http.Client
}

// NewClient returns a client for the daemon listening on socket.
func NewClient(socket string) *Client {
	tr := &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", socket)
	}}
	return &Client{socket: socket, http: &http.Client{Transport: tr}}
}

func (c *Client) Status(ctx context.Context, stack string) (Status, error) {
	var st Status
	err := c.do(ctx, http.MethodGet, "/v1/status", url.Values{"stack": {stack}}, &st)
	return st, err
}

func (c *Client) History(ctx context.Context, stack string, limit int) ([]Deployment, error) {
	var ds []Deployment
	err := c.do(ctx, http.MethodGet, "/v1/history", url.Values{"stack": {stack}, "limit": {strconv.Itoa(limit)}}, &ds)
	return ds, err
}

func (c *Client) Diff(ctx context.Context, stack string) ([]Diff, error) {
	var ds []Diff
	err := c.do(ctx, http.MethodGet, "/v1/diff", url.Values{"stack": {stack}}, &ds)
	return ds, err
}

// Snapshots lists snapshots of a stack ("" for all), newest first.
func (c *Client) Snapshots(ctx context.Context, stack string) ([]Snapshot, error) {
	var ss []Snapshot
	err := c.do(ctx, http.MethodGet, "/v1/backups", url.Values{"stack": {stack}}, &ss)
	return ss, err
}

// RemoteSnapshots lists the copies on backup.remote of this host (all
// hosts: every host's) and of a stack ("" for all).
func (c *Client) RemoteSnapshots(ctx context.Context, stack string, allHosts bool) ([]RemoteSnapshot, error) {
	var ss []RemoteSnapshot
	err := c.do(ctx, http.MethodGet, "/v1/backups/remote", url.Values{"stack": {stack}, "all_hosts": {strconv.FormatBool(allHosts)}}, &ss)
	return ss, err
}

// BackupTestRemote restore-tests the newest copy on the remote; an error says why it failed.
func (c *Client) BackupTestRemote(ctx context.Context, stack, volume string, level int) error {
	return c.act(ctx, "/v1/backup/test", url.Values{"stack": {stack}, "volume": {volume}, "level": {strconv.Itoa(level)}, "remote": {"true"}})
}

// BackupRun snapshots a stack's volume ("" for all it backs up).
func (c *Client) BackupRun(ctx context.Context, stack, volume string, wait bool) error {
	return c.act(ctx, "/v1/backup/run", url.Values{"stack": {stack}, "volume": {volume}, "wait": {strconv.FormatBool(wait)}})
}

// BackupTest restore-tests the newest good snapshot; an error says why it failed.
func (c *Client) BackupTest(ctx context.Context, stack, volume string, level int) error {
	return c.act(ctx, "/v1/backup/test", url.Values{"stack": {stack}, "volume": {volume}, "level": {strconv.Itoa(level)}})
}

// BackupRestore puts a snapshot (0: the newest good one) back into its
// volume; with fromHost, the newest good remote copy of that host's.
func (c *Client) BackupRestore(ctx context.Context, stack, volume string, snapshot int64, fromHost string) error {
	q := url.Values{"stack": {stack}, "volume": {volume}, "snapshot": {strconv.FormatInt(snapshot, 10)}}
	if fromHost != "" {
		q.Set("from_host", fromHost)
	}
	return c.act(ctx, "/v1/backup/restore", q)
}

// Drift lists open drifts and up to limit recently closed ones.
func (c *Client) Drift(ctx context.Context, limit int) ([]Drift, error) {
	return c.DriftOf(ctx, "", limit)
}

// DriftOf is Drift of one stack ("" for all); the daemon refuses an
// unknown one.
func (c *Client) DriftOf(ctx context.Context, stack string, limit int) ([]Drift, error) {
	var ds []Drift
	err := c.do(ctx, http.MethodGet, "/v1/drift", url.Values{"stack": {stack}, "limit": {strconv.Itoa(limit)}}, &ds)
	if err != nil || stack == "" {
		return ds, err
	}
	// The daemon checks the name; the list is filtered here, so an older
	// daemon that lists every stack's drift gives the same answer.
	out := []Drift{}
	for _, d := range ds {
		if d.Stack == stack {
			out = append(out, d)
		}
	}
	return out, nil
}

// Sync asks for a reconcile; with retry it also retries a revision that
// failed its health gate, with wait it returns the reconcile's error (and
// says which stacks it left held).
func (c *Client) Sync(ctx context.Context, stack string, retry, wait bool) error {
	_, err := c.SyncResult(ctx, stack, retry, wait)
	return err
}

// SyncResult is Sync with the daemon's answer: the stacks left held are
// listed in it (and, after a wait, named by the error).
func (c *Client) SyncResult(ctx context.Context, stack string, retry, wait bool) (SyncResult, error) {
	return c.SyncWith(ctx, SyncRequest{Stack: stack, Retry: retry, Wait: wait})
}

// SyncRequest is what `gitopsd sync` asks for.
type SyncRequest struct {
	Stack string
	Retry bool // also retry a revision that failed its health gate
	// SkipWave applies Stack's new revision now, whatever the fleet's
	// rollout says.
	SkipWave bool
	Wait     bool
}

// SyncWith is SyncResult for any SyncRequest.
func (c *Client) SyncWith(ctx context.Context, r SyncRequest) (SyncResult, error) {
	stack, wait := r.Stack, r.Wait
	q := url.Values{"stack": {stack}, "wait": {strconv.FormatBool(wait)}}
	if r.Retry {
		// Only when asked: a daemon from before --retry answers a request
		// without it as it always did.
		q.Set("retry", "true")
	}
	if r.SkipWave {
		q.Set("skip_wave", "true")
	}
	var res SyncResult
	if err := c.do(ctx, http.MethodPost, "/v1/sync", q, &res); err != nil {
		return res, err
	}
	res.Stack, res.Waited = stack, wait
	if res.Held == nil {
		res.Held = []HeldStack{}
	}
	if res.Error != "" {
		return res, errors.New(res.Error)
	}
	return res, nil
}

// StackNames lists the stacks the daemon knows.
func (c *Client) StackNames(ctx context.Context) ([]string, error) {
	var res StackNames
	err := c.do(ctx, http.MethodGet, "/v1/stacks", nil, &res)
	return res.Stacks, err
}

// Version asks the daemon for its version.
func (c *Client) Version(ctx context.Context) (string, error) {
	var res VersionInfo
	err := c.do(ctx, http.MethodGet, "/v1/version", nil, &res)
	if err != nil && !IsUnreachable(err) && strings.Contains(err.Error(), "404") {
		// The mux of a daemon from before /v1/version.
		return "", errors.New("the running daemon is older than this client and does not tell its version (restart it to run this one)")
	}
	return res.Daemon, err
}

// Rollback returns a stack to a revision ("" for its last healthy one) and
// pins it there.
func (c *Client) Rollback(ctx context.Context, stack, to string, withData, wait bool) error {
	q := url.Values{"stack": {stack}, "to": {to}, "wait": {strconv.FormatBool(wait)}}
	if withData {
		q.Set("with_data", "true")
	}
	return c.act(ctx, "/v1/rollback", q)
}

// Unpin lets a pinned stack follow the branch again.
func (c *Client) Unpin(ctx context.Context, stack string, wait bool) error {
	return c.act(ctx, "/v1/unpin", url.Values{"stack": {stack}, "wait": {strconv.FormatBool(wait)}})
}

// StateBackup has the daemon write a consistent copy of its database to
// path (absolute, on the daemon's host, not existing yet).
func (c *Client) StateBackup(ctx context.Context, path string) error {
	return c.act(ctx, "/v1/state/backup", url.Values{"path": {path}})
}

// StateAdopt ends the hold of a daemon whose record was found empty while
// its stacks run, and reconciles.
func (c *Client) StateAdopt(ctx context.Context, wait bool) error {
	return c.act(ctx, "/v1/state/adopt", url.Values{"wait": {strconv.FormatBool(wait)}})
}

// unreachable is a failure to reach the daemon, as opposed to its answer.
type unreachable struct{ error }

func (u unreachable) Unwrap() error { return u.error }

// IsUnreachable says whether err means the daemon did not answer at all.
func IsUnreachable(err error) bool {
	var u unreachable
	return errors.As(err, &u)
}

func (c *Client) act(ctx context.Context, path string, q url.Values) error {
	var res SyncResult
	if err := c.do(ctx, http.MethodPost, path, q, &res); err != nil {
		return err
	}
	if res.Error != "" {
		return errors.New(res.Error)
	}
	return nil
}

func (c *Client) do(ctx context.Context, method, path string, q url.Values, out any) error {
	req, err := http.NewRequestWithContext(ctx, method, "http://gitopsd"+path+"?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		if errors.Is(err, syscall.ENOENT) || errors.Is(err, syscall.ECONNREFUSED) {
			return unreachable{fmt.Errorf("cannot reach gitopsd at %s: is the daemon running? (gitopsd run, or systemctl status gitopsd)", c.socket)}
		}
		if errors.Is(err, syscall.EACCES) {
			return unreachable{fmt.Errorf("cannot reach gitopsd at %s: permission denied (run as root or as a member of group gitopsd)", c.socket)}
		}
		return unreachable{fmt.Errorf("call gitopsd at %s: %w", c.socket, err)}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return fmt.Errorf("read answer of gitopsd: %w", err)
	}
	if resp.StatusCode/100 != 2 {
		var e errorBody
		if json.Unmarshal(body, &e) == nil && e.Error != "" {
			return errors.New(e.Error)
		}
		return fmt.Errorf("gitopsd answered %s", resp.Status)
	}
	return json.Unmarshal(body, out)
}
