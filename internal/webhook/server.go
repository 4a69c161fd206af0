package webhook

import (
	"net/http"
	"time"
)

// Limits bound what one client can hold of the webhook server. A forge
// sends a push event in well under a second and reads the short reply at
// once, so every bound is far above what a forge needs and far below what
// lets a few hundred slow connections pile up.
type Limits struct {
	// ReadHeaderTimeout bounds reading a request's headers.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request, body included: a body
	// sent a byte at a time is cut off here, whatever its length.
	ReadTimeout time.Duration
	// WriteTimeout bounds writing the reply, from the end of the headers.
	WriteTimeout time.Duration
	// IdleTimeout bounds how long a kept-alive connection waits for its
	// next request.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request's headers.
	MaxHeaderBytes int
	// MaxConcurrent bounds the requests handled at once. One more gets 503
	// at once, with Retry-After, and its connection is closed: it does not
	// wait for a slot, so a flood of requests ties up no more than
	// MaxConcurrent bodies (MaxBody each) however long it lasts. A push
	// whose webhook was turned away is still found by the next poll.
	MaxConcurrent int
}

// DefaultLimits are the limits of the daemon's webhook server.
func DefaultLimits() Limits {
	return Limits{
		ReadHeaderTimeout: 5 * time.Second,
		ReadTimeout:       10 * time.Second,
		WriteTimeout:      10 * time.Second,
		IdleTimeout:       30 * time.Second,
		MaxHeaderBytes:    64 << 10,
		MaxConcurrent:     8,
	}
}

// NewServer is an HTTP server for h with lim's timeouts, and h behind a
// bound of lim.MaxConcurrent requests at once.
func NewServer(h http.Handler, lim Limits) *http.Server {
	return &http.Server{
		Handler:           Bounded(h, lim.MaxConcurrent),
		ReadHeaderTimeout: lim.ReadHeaderTimeout,
		ReadTimeout:       lim.ReadTimeout,
		WriteTimeout:      lim.WriteTimeout,
		IdleTimeout:       lim.IdleTimeout,
		MaxHeaderBytes:    lim.MaxHeaderBytes,
	}
}

// Bounded lets at most n requests into h at once (n <= 0: no bound); the
// others get 503 with Retry-After: 1 without waiting, and their
// connections are closed so their bodies are not read.
func Bounded(h http.Handler, n int) http.Handler {
	if n <= 0 {
		return h
	}
	slots := make(chan struct{}, n)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case slots <- struct{}{}:
			defer func() { <-slots }()
			h.ServeHTTP(w, r)
		default:
			closeAfter(w)
			w.Header().Set("Retry-After", "1")
			reply(w, http.StatusServiceUnavailable, "busy: too many requests at once")
		}
	})
}
