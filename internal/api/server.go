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
	"path/filepath"
	"strconv"
	"time"
)

// Backend is what the daemon offers the API. Methods are called from
// request goroutines and must be safe for concurrent use.
type Backend interface {
	Status(ctx context.Context, stack string) (Status, error)
	History(ctx context.Context, stack string, limit int) ([]Deployment, error)
	Diff(ctx context.Context, stack string) ([]Diff, error)
	// Sync asks for a reconcile of one stack ("" for all); with retry it
	// also retries a revision that failed its health gate. With wait it
	// returns when that reconcile has finished, with its error.
	Sync(ctx context.Context, stack string, retry, wait bool) error
	// Rollback returns a stack to a revision ("" for its last healthy one)
	// and pins it there; Unpin lets it follow the branch again.
	Rollback(ctx context.Context, stack, to string, wait bool) error
	Unpin(ctx context.Context, stack string, wait bool) error
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
	s := &Server{backend: backend, log: log, ln: ln}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/status", s.status)
	mux.HandleFunc("GET /v1/history", s.history)
	mux.HandleFunc("GET /v1/diff", s.diff)
	mux.HandleFunc("POST /v1/sync", s.sync)
	mux.HandleFunc("POST /v1/rollback", s.rollback)
	mux.HandleFunc("POST /v1/unpin", s.unpin)
	s.http = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
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

func (s *Server) sync(w http.ResponseWriter, r *http.Request) {
	s.act(w, r, func(q url.Values, wait bool) error {
		return s.backend.Sync(r.Context(), q.Get("stack"), flag(q, "retry"), wait)
	})
}

func (s *Server) rollback(w http.ResponseWriter, r *http.Request) {
	s.act(w, r, func(q url.Values, wait bool) error {
		return s.backend.Rollback(r.Context(), q.Get("stack"), q.Get("to"), wait)
	})
}

func (s *Server) unpin(w http.ResponseWriter, r *http.Request) {
	s.act(w, r, func(q url.Values, wait bool) error { return s.backend.Unpin(r.Context(), q.Get("stack"), wait) })
}

// act runs a request that changes something and answers a SyncResult.
func (s *Server) act(w http.ResponseWriter, r *http.Request, do func(url.Values, bool) error) {
	q := r.URL.Query()
	err := do(q, flag(q, "wait"))
	res := SyncResult{Queued: true}
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
		w.WriteHeader(code)
		_ = json.NewEncoder(w).Encode(errorBody{Error: err.Error()})
		return
	}
	if err := json.NewEncoder(w).Encode(v); err != nil {
		s.log.Warn("api: write reply", "err", err)
	}
}
