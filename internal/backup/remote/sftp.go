package remote

import (
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path"
	"sort"
	"sync"
	"time"

	"github.com/pkg/sftp"
	"golang.org/x/crypto/ssh"
)

// sftpRemote stores files under a folder of an SSH server. It keeps one
// connection and dials again when that one broke; a call whose context
// ends closes the connection, which is the only way to interrupt a call
// of pkg/sftp, so no call outlives its deadline.
type sftpRemote struct {
	loc      Location
	config   *ssh.ClientConfig
	t        Timeouts
	activity activity

	mu  sync.Mutex
	ssh *ssh.Client
	cli *sftp.Client
}

// OpenSFTP returns a Remote on loc, authenticating with the key in
// SSH_KEY_FILE and accepting only the host key that SSH_KNOWN_HOSTS pins.
// It connects once, so that a wrong key or host shows at start.
func OpenSFTP(ctx context.Context, loc Location, c Credentials, t Timeouts) (Remote, error) {
	keyPEM, err := os.ReadFile(c.SSHKeyFile)
	if err != nil {
		return nil, fmt.Errorf("%s: read SSH_KEY_FILE: %w", loc, err)
	}
	signer, err := ssh.ParsePrivateKey(keyPEM)
	if err != nil {
		var pp *ssh.PassphraseMissingError
		if errors.As(err, &pp) {
			return nil, fmt.Errorf("%s: SSH_KEY_FILE %s is protected by a passphrase; gitopsd needs a key without one", loc, c.SSHKeyFile)
		}
		// The parser's message may quote the file; say only what it is.
		return nil, fmt.Errorf("%s: SSH_KEY_FILE %s is not a private key OpenSSH can read", loc, c.SSHKeyFile)
	}
	hostKey, algorithms, err := pinnedHostKey(c.SSHKnownHosts, loc.Host)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", loc, err)
	}
	r := &sftpRemote{loc: loc, t: t, config: &ssh.ClientConfig{
		User:              loc.User,
		Auth:              []ssh.AuthMethod{ssh.PublicKeys(signer)},
		HostKeyCallback:   hostKey,
		HostKeyAlgorithms: algorithms,
		Timeout:           t.Call,
	}}
	cctx, cancel := callContext(ctx, t.Call)
	defer cancel()
	if _, err := r.client(cctx); err != nil {
		return nil, fmt.Errorf("%s: %w", loc, err)
	}
	return r, nil
}

func (r *sftpRemote) String() string { return r.loc.String() }

func (r *sftpRemote) Close() error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.dropLocked()
	return nil
}

// client returns the live connection, dialling one if there is none.
func (r *sftpRemote) client(ctx context.Context) (*sftp.Client, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cli != nil {
		return r.cli, nil
	}
	d := net.Dialer{Timeout: r.t.Call}
	raw, err := d.DialContext(ctx, "tcp", r.loc.Host)
	if err != nil {
		return nil, fmt.Errorf("connect: %w", err)
	}
	conn := r.activity.wrap(raw)
	// The handshake has no context of its own: a deadline on the socket
	// bounds it, and closing the socket ends it when ctx does.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()
	if dl, ok := ctx.Deadline(); ok {
		_ = conn.SetDeadline(dl)
	}
	c, chans, reqs, err := ssh.NewClientConn(conn, r.loc.Host, r.config)
	if err != nil {
		conn.Close()
		return nil, fmt.Errorf("ssh handshake: %w", causeErr(ctx, err))
	}
	_ = conn.SetDeadline(time.Time{})
	client := ssh.NewClient(c, chans, reqs)
	cli, err := sftp.NewClient(client)
	if err != nil {
		client.Close()
		return nil, fmt.Errorf("start the sftp subsystem: %w", causeErr(ctx, err))
	}
	r.ssh, r.cli = client, cli
	return cli, nil
}

func (r *sftpRemote) dropLocked() {
	if r.cli != nil {
		// The SSH connection first: closing the sftp client waits for
		// its reader, which a hung server never wakes.
		r.ssh.Close()
		r.cli.Close()
		r.cli, r.ssh = nil, nil
	}
}

// drop closes cli's connection if it is still the current one.
func (r *sftpRemote) drop(cli *sftp.Client) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.cli == cli {
		r.dropLocked()
	}
}

// do runs op on the connection and makes ctx able to interrupt it. A
// failure that is not the server's answer (the connection broke, or ctx
// ended) drops the connection, so the next call starts afresh.
func (r *sftpRemote) do(ctx context.Context, op func(*sftp.Client) error) error {
	cli, err := r.client(ctx)
	if err != nil {
		return err
	}
	stop := context.AfterFunc(ctx, func() { r.drop(cli) })
	err = op(cli)
	stop()
	if err != nil {
		var status *sftp.StatusError
		if ctx.Err() != nil || (!errors.As(err, &status) && !errors.Is(err, fs.ErrNotExist)) {
			r.drop(cli)
		}
		return causeErr(ctx, err)
	}
	return nil
}

func (r *sftpRemote) path(name string) string { return path.Join(r.loc.Prefix, name) }

// Put writes to name.part and renames it into place, so a name is never
// seen half-written, and fsyncs before the rename where the server can.
func (r *sftpRemote) Put(ctx context.Context, name string, body io.Reader, size int64) error {
	ctx, w := newWatchdog(ctx, r.t.Idle, &r.activity)
	defer w.stop()
	final := r.path(name)
	tmp := final + ".part"
	err := r.do(ctx, func(c *sftp.Client) error {
		if err := c.MkdirAll(path.Dir(final)); err != nil {
			return fmt.Errorf("create folder: %w", err)
		}
		f, err := c.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC)
		if err != nil {
			return err
		}
		n, err := f.ReadFrom(&progressReader{r: body, w: w})
		if err == nil && n != size {
			err = fmt.Errorf("wrote %d bytes, want %d", n, size)
		}
		if err == nil {
			if serr := f.Sync(); serr != nil && !isUnsupported(serr) {
				err = fmt.Errorf("fsync: %w", serr)
			}
		}
		if cerr := f.Close(); err == nil && cerr != nil {
			err = cerr
		}
		if err != nil {
			return err
		}
		if err := c.PosixRename(tmp, final); err != nil {
			if !isUnsupported(err) {
				return fmt.Errorf("rename into place: %w", err)
			}
			_ = c.Remove(final)
			return c.Rename(tmp, final)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("%s: put %s: %w", r.loc, name, err)
	}
	return nil
}

func isUnsupported(err error) bool {
	var status *sftp.StatusError
	return errors.As(err, &status) && status.FxCode() == sftp.ErrSSHFxOpUnsupported
}

func (r *sftpRemote) Get(ctx context.Context, name string) (io.ReadCloser, error) {
	wctx, w := newWatchdog(ctx, r.t.Idle, &r.activity)
	var f *sftp.File
	cli, err := r.client(wctx)
	if err == nil {
		// The file lives on as long as the reader: ctx (through the
		// watchdog) must interrupt its reads too, not only the open.
		stop := context.AfterFunc(wctx, func() { r.drop(cli) })
		f, err = cli.Open(r.path(name))
		if err != nil {
			stop()
			if ctx.Err() != nil || !errors.Is(err, fs.ErrNotExist) {
				r.drop(cli)
			}
		} else {
			w.kick()
			return &sftpReader{f: f, ctx: wctx, w: w, stop: stop, loc: r.loc, name: name}, nil
		}
	}
	w.stop()
	if errors.Is(err, fs.ErrNotExist) {
		err = fmt.Errorf("%w (%v)", ErrNotExist, err)
	}
	return nil, fmt.Errorf("%s: get %s: %w", r.loc, name, causeErr(wctx, err))
}

type sftpReader struct {
	f    *sftp.File
	ctx  context.Context
	w    *watchdog
	stop func() bool
	loc  Location
	name string
}

func (s *sftpReader) Read(p []byte) (int, error) {
	n, err := s.f.Read(p)
	if n > 0 {
		s.w.kick()
	}
	if err != nil && err != io.EOF {
		err = fmt.Errorf("%s: read %s: %w", s.loc, s.name, causeErr(s.ctx, err))
	}
	return n, err
}

func (s *sftpReader) Close() error {
	s.stop()
	s.w.stop()
	return s.f.Close()
}

func (r *sftpRemote) Stat(ctx context.Context, name string) (int64, error) {
	ctx, cancel := callContext(ctx, r.t.Call)
	defer cancel()
	var size int64
	err := r.do(ctx, func(c *sftp.Client) error {
		fi, err := c.Stat(r.path(name))
		if err != nil {
			return err
		}
		if !fi.Mode().IsRegular() {
			return fmt.Errorf("%s is not a file", name)
		}
		size = fi.Size()
		return nil
	})
	if errors.Is(err, fs.ErrNotExist) {
		err = fmt.Errorf("%w (%v)", ErrNotExist, err)
	}
	if err != nil {
		return 0, fmt.Errorf("%s: stat %s: %w", r.loc, name, err)
	}
	return size, nil
}

func (r *sftpRemote) List(ctx context.Context, dir string) ([]string, error) {
	ctx, cancel := callContext(ctx, r.t.Call)
	defer cancel()
	var names []string
	err := r.do(ctx, func(c *sftp.Client) error {
		infos, err := c.ReadDir(r.path(dir))
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		for _, fi := range infos {
			names = append(names, fi.Name())
		}
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("%s: list %s: %w", r.loc, dir, err)
	}
	sort.Strings(names)
	return names, nil
}

func (r *sftpRemote) DeleteAll(ctx context.Context, dir string) error {
	ctx, cancel := callContext(ctx, r.t.Call)
	defer cancel()
	err := r.do(ctx, func(c *sftp.Client) error {
		err := c.RemoveAll(r.path(dir))
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("%s: delete %s: %w", r.loc, dir, err)
	}
	return nil
}
