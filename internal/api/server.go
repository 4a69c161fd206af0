package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// Backend is what the daemon offers the API. Methods are called from
// request goroutines and must be safe for concurrent use.
type Backend interface {
	Status(ctx context.Context, stack string) (Status, error)
	History(ctx context.Context, stack string, limit int) ([]Deployment, error)
	Diff(ctx context.Context, stack string) ([]Diff, error)
	// Drift lists open drifts and up to limit recently closed ones, newest first.
	Drift(ctx context.Context, limit int) ([]Drift, error)
	// Sync asks for a reconcile of one stack ("" for all); with retry it
	// also retries a revision that failed its health gate. With wait it
	// returns when that reconcile has finished, with its error.
	Sync(ctx context.Context, stack string, retry, wait bool) error
	// SyncSkipWave syncs one stack to the branch head now, whatever the
	// wave of the fleet's rollout says (`gitopsd sync STACK --skip-wave`).
	SyncSkipWave(ctx context.Context, stack string, wait bool) error
	// Rollback returns a stack to a revision ("" for its last healthy one)
	// and pins it there; Unpin lets it follow the branch again.
	// With withData, the volumes the stack backs up get back the snapshots
	// taken before the deploy that is rolled back (x-gitopsd.backup.before_deploy).
	Rollback(ctx context.Context, stack, to string, withData, wait bool) error
	Unpin(ctx context.Context, stack string, wait bool) error
	// Snapshots lists snapshots (of one stack, or all), newest first.
	Snapshots(ctx context.Context, stack string) ([]Snapshot, error)
	// BackupRun snapshots a stack's volume ("" for every volume it backs
	// up); BackupTest restore-tests the newest good snapshot (level 0: the
	// volume's configured level); BackupRestore puts a snapshot (0: the
	// newest good one) back, or with fromHost the newest good remote copy
	// of that host's stack volume. They run one at a time in the daemon's loop.
	BackupRun(ctx context.Context, stack, volume string, wait bool) error
	BackupTest(ctx context.Context, stack, volume string, level int) error
	// RemoteSnapshots lists the copies on backup.remote of this host (or
	// of every host) and of a stack ("" for all); BackupTestRemote
	// restore-tests the newest remote copy of a stack's volume.
	RemoteSnapshots(ctx context.Context, stack string, allHosts bool) ([]RemoteSnapshot, error)
	BackupTestRemote(ctx context.Context, stack, volume string, level int) error
	BackupRestore(ctx context.Context, stack, volume string, snapshot int64, fromHost string) error
	// StateBackup writes a consistent copy of the daemon's database to
	// path (an absolute path on the daemon's host that does not exist yet).
	StateBackup(ctx context.Context, path string) error
	// StateAdopt ends the hold of a daemon that found its record empty
	// while its stacks run: the running containers become the starting
	// point, and a reconcile follows (waited for with wait).
	StateAdopt(ctx context.Context, wait bool) error
}

// ErrNotFound is returned by a Backend for an unknown stack.
var ErrNotFound = errors.New("not found")

// Server serves the local API on a unix socket.
type Server struct {
	backend Backend
	log     *slog.Logger
	http    *http.Server
	ln      net.Listener
}

// Listen creates the socket (replacing a stale one) and returns a Server
// ready to Serve.
func Listen(path string, backend Backend, log *slog.Logger) (*Server, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("api socket %s: %w", path, err)
	}
	// A socket left by a killed daemon blocks bind; a live daemon answers.
	if conn, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
		conn.Close()
		return nil, fmt.Errorf("api socket %s: another gitopsd is listening", path)
	}
	_ = os.Remove(path)
	ln, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("api socket %s: %w", path, err)
	}
	if err := os.Chmod(path, 0o660); err != nil {
		ln.Close()
		return nil, fmt.Errorf("api socket %s: %w", path, err)
	}
	if g, err := user.LookupGroup(SocketGroup); err == nil {
		gid, _ := strconv.Atoi(g.Gid)
		if err := os.Chown(path, -1, gid); err != nil {
			log.Warn("api socket: cannot give it to group "+SocketGroup+"; only root can use it", "err", err)
		}
	}
	s := &Server{backend: backend, log: log, ln: ln}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", s.status)
	mux.HandleFunc("GET /v1/history", s.history)
	mux.HandleFunc("GET /v1/diff", s.diff)
	mux.HandleFunc("GET /v1/drift", s.drift)
	mux.HandleFunc("GET /v1/backups", s.snapshots)
	mux.HandleFunc("GET /v1/backups/remote", s.remoteSnapshots)
	mux.HandleFunc("POST /v1/backup/run", s.backupRun)
	mux.HandleFunc("POST /v1/backup/test", s.backupTest)
	mux.HandleFunc("POST /v1/backup/restore", s.backupRestore)
	mux.HandleFunc("POST /v1/sync", s.sync)
	mux.HandleFunc("POST /v1/rollback", s.rollback)
	mux.HandleFunc("POST /v1/unpin", s.unpin)
	mux.HandleFunc("POST /v1/state/backup", s.stateBackup)
	mux.HandleFunc("POST /v1/state/adopt", s.stateAdopt)
	mux.HandleFunc("GET /v1/stacks", s.stackNames)
	mux.HandleFunc("GET /v1/version", s.version)
	s.http = &http.Server{Handler: onlyOwnerChanges(knownStacks(backend, mux)), ReadHeaderTimeout: 5 * time.Second, ConnContext: withPeer}
	return s, nil
}

// Serve answers requests until Shutdown.
func (s *Server) Serve() error {
	if err := s.http.Serve(s.ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
		return fmt.Errorf("api: %w", err)
	}
	return nil
}

// Shutdown stops the server and removes the socket.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.http.Shutdown(ctx)
	_ = os.Remove(s.ln.Addr().String())
	return err
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	st, err := s.backend.Status(r.Context(), r.URL.Query().Get("stack"))
	s.reply(w, st, err)
}

func (s *Server) history(w http.ResponseWriter, r *http.Request) {
	limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
	ds, err := s.backend.History(r.Context(), r.URL.Query().Get("stack"), limit)
	if ds == nil {
		ds = []Deployment{}
	}
	s.reply(w, ds, err)
}

func (s *Server) diff(w http.ResponseWriter, r *http.Request) {
	ds, err := s.backend.Diff(r.Context(), r.URL.Query().Get("stack"))
	if ds == nil {
		ds = []Diff{}
	}
	s.reply(w, ds, err)
}

func (s *Server) drift(w http.ResponseWriter, r *http.Request) {
	limit, _ := strconv.Atoi(r.URL.Query().Get("limit"))
	ds, err := s.backend.Drift(r.Context(), limit)
	if ds == nil {
		ds = []Drift{}
	}
	s.reply(w, ds, err)
}

func (s *Server) snapshots(w http.ResponseWriter, r *http.Request) {
	ss, err := s.backend.Snapshots(r.Context(), r.URL.Query().Get("stack"))
	if ss == nil {
		ss = []Snapshot{}
	}
	s.reply(w, ss, err)
}

func (s *Server) backupRun(w http.ResponseWriter, r *http.Request) {
	s.act(w, r, func(q url.Values, wait bool) error {
		return s.backend.BackupRun(r.Context(), q.Get("stack"), q.Get("volume"), wait)
	})
}

func (s *Server) remoteSnapshots(w http.ResponseWriter, r *http.Request) {
	ss, err := s.backend.RemoteSnapshots(r.Context(), r.URL.Query().Get("stack"), flag(r.URL.Query(), "all_hosts"))
	if ss == nil {
		ss = []RemoteSnapshot{}
	}
	s.reply(w, ss, err)
}

func (s *Server) backupTest(w http.ResponseWriter, r *http.Request) {
	s.act(w, r, func(q url.Values, _ bool) error {
		level, _ := strconv.Atoi(q.Get("level"))
		if flag(q, "remote") {
			return s.backend.BackupTestRemote(r.Context(), q.Get("stack"), q.Get("volume"), level)
		}
		return s.backend.BackupTest(r.Context(), q.Get("stack"), q.Get("volume"), level)
	})
}

func (s *Server) backupRestore(w http.ResponseWriter, r *http.Request) {
	s.act(w, r, func(q url.Values, _ bool) error {
		id, _ := strconv.ParseInt(q.Get("snapshot"), 10, 64)
		return s.backend.BackupRestore(r.Context(), q.Get("stack"), q.Get("volume"), id, q.Get("from_host"))
	})
}

func (s *Server) sync(w http.ResponseWriter, r *http.Request) {
	s.act(w, r, func(q url.Values, wait bool) error {
		if flag(q, "skip_wave") {
			return s.backend.SyncSkipWave(r.Context(), q.Get("stack"), wait)
		}
		return s.backend.Sync(r.Context(), q.Get("stack"), flag(q, "retry"), wait)
	})
}

func (s *Server) rollback(w http.ResponseWriter, r *http.Request) {
	s.act(w, r, func(q url.Values, wait bool) error {
		return s.backend.Rollback(r.Context(), q.Get("stack"), q.Get("to"), flag(q, "with_data"), wait)
	})
}

func (s *Server) unpin(w http.ResponseWriter, r *http.Request) {
	s.act(w, r, func(q url.Values, wait bool) error { return s.backend.Unpin(r.Context(), q.Get("stack"), wait) })
}

func (s *Server) stateBackup(w http.ResponseWriter, r *http.Request) {
	s.act(w, r, func(q url.Values, _ bool) error {
		path := q.Get("path")
		if !filepath.IsAbs(path) {
			return fmt.Errorf("state backup: the file must be an absolute path, got %q", path)
		}
		return s.backend.StateBackup(r.Context(), path)
	})
}

func (s *Server) stateAdopt(w http.ResponseWriter, r *http.Request) {
	s.act(w, r, func(_ url.Values, wait bool) error { return s.backend.StateAdopt(r.Context(), wait) })
}

func (s *Server) stackNames(w http.ResponseWriter, r *http.Request) {
	namer, ok := s.backend.(StackNamer)
	if !ok {
		s.reply(w, StackNames{Stacks: []string{}}, nil)
		return
	}
	names, err := namer.StackNames(r.Context())
	if names == nil {
		names = []string{}
	}
	s.reply(w, StackNames{Stacks: names}, err)
}

func (s *Server) version(w http.ResponseWriter, _ *http.Request) {
	v := ""
	if vb, ok := s.backend.(Versioner); ok {
		v = vb.Version()
	}
	s.reply(w, VersionInfo{Daemon: v}, nil)
}

// act runs a request that changes something and answers a SyncResult.
func (s *Server) act(w http.ResponseWriter, r *http.Request, do func(url.Values, bool) error) {
	q := r.URL.Query()
	err := do(q, flag(q, "wait"))
	res := SyncResult{Queued: true, Held: []HeldStack{}}
	var held *HeldError
	if errors.As(err, &held) {
		res.Held = held.Stacks
		if held.Queued && err == error(held) {
			err = nil // a note: the sync is queued, its outcome unknown
		}
	}
	if err != nil && !errors.Is(err, ErrNotFound) {
		// The request was served: the reconcile ran and failed.
		res.Error = err.Error()
		s.reply(w, res, nil)
		return
	}
	s.reply(w, res, err)
}

// flag reads a boolean query parameter; absent is false, so clients that
// do not know a flag keep their meaning.
func flag(q url.Values, name string) bool {
	v := q.Get(name)
	return v == "true" || v == "1"
}

func (s *Server) reply(w http.ResponseWriter, v any, err error) {
	w.Header().Set("Content-Type", "application/json")
	if err != nil {
		code := http.StatusInternalServerError
		if errors.Is(err, ErrNotFound) {
			code = http.StatusNotFound
		}
		writeError(w, code, err.Error())
		return
	}
	if err := json.NewEncoder(w).Encode(v); err != nil {
		s.log.Warn("api: write reply", "err", err)
	}
}

func writeError(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(errorBody{Error: msg})
}

// SocketGroup is the group the socket is given to (mode 0660) when it
// exists: its members can read (status, history, diff, drift, backup list);
// calls that change something are for root (or the daemon's own user) only.
var SocketGroup = "gitopsd"

type peerKey struct{}

// withPeer records the connecting process's credentials (SO_PEERCRED).
func withPeer(ctx context.Context, c net.Conn) context.Context {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return ctx
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return ctx
	}
	var cred *syscall.Ucred
	_ = raw.Control(func(fd uintptr) {
		cred, _ = syscall.GetsockoptUcred(int(fd), syscall.SOL_SOCKET, syscall.SO_PEERCRED)
	})
	if cred == nil {
		return ctx
	}
	return context.WithValue(ctx, peerKey{}, *cred)
}

// onlyOwnerChanges refuses calls that change something (POST) from a peer
// that is neither root nor the daemon's own user: group members read.
func onlyOwnerChanges(next http.Handler) http.Handler {
	self := uint32(os.Getuid())
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet {
			cred, ok := r.Context().Value(peerKey{}).(syscall.Ucred)
			if !ok || (cred.Uid != 0 && cred.Uid != self) {
				w.Header().Set("Content-Type", "application/json")
				w.WriteHeader(http.StatusForbidden)
				_ = json.NewEncoder(w).Encode(errorBody{Error: fmt.Sprintf(
					"%s %s changes gitopsd's state and needs root; uid %d may only read (status, history, diff, drift, backup list)",
					r.Method, r.URL.Path, cred.Uid)})
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}
