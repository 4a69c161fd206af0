package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync/atomic"
	"syscall"
	"time"
)

// proxyMain forwards every request on :$PORT to upstream (host:port), the
// name of a service on the stack's network. The demo publishes this proxy's
// port, so the app behind it publishes none and gitopsd can roll it
// start-first: two app replicas under one name, and no request lost.
func proxyMain(args []string) error {
	if len(args) != 1 {
		return errors.New("usage: testapp proxy HOST:PORT")
	}
	if _, _, err := net.SplitHostPort(args[0]); err != nil {
		return fmt.Errorf("proxy upstream %q: %w", args[0], err)
	}
	timeout := 500 * time.Millisecond
	if v := os.Getenv("CONNECT_TIMEOUT"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil {
			return fmt.Errorf("parse CONNECT_TIMEOUT: %w", err)
		}
		timeout = d
	}
	p := newProxy(args[0], net.DefaultResolver.LookupHost, timeout)
	srv := &http.Server{Addr: ":" + envOr("PORT", "8080"), Handler: p, ReadHeaderTimeout: 10 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.ListenAndServe() }()
	fmt.Printf("testapp proxy on %s to %s\n", srv.Addr, args[0])
	sigs := make(chan os.Signal, 1)
	signal.Notify(sigs, syscall.SIGTERM, syscall.SIGINT)
	select {
	case err := <-errc:
		return fmt.Errorf("proxy: %w", err)
	case <-sigs:
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return srv.Shutdown(ctx)
}

// proxy resolves its upstream at every request, as Docker's DNS lists a
// service's replicas as they come and go, and tries the addresses in turn,
// starting with the next one each time so replicas share the load. An
// address that does not take the connection within the timeout (a replica
// still joining the network, or one gone whose name Docker's DNS still
// lists for a moment) is skipped, as nginx's proxy_next_upstream does.
type proxy struct {
	host, port string
	lookup     func(ctx context.Context, host string) ([]string, error)
	transport  *http.Transport
	next       atomic.Uint64
}

// maxProxyBody bounds the request body kept for a retry on another address.
const maxProxyBody = 1 << 20

func newProxy(upstream string, lookup func(context.Context, string) ([]string, error), connectTimeout time.Duration) *proxy {
	host, port, _ := net.SplitHostPort(upstream)
	return &proxy{
		host: host, port: port, lookup: lookup,
		transport: &http.Transport{
			DialContext:           (&net.Dialer{Timeout: connectTimeout}).DialContext,
			MaxIdleConnsPerHost:   16,
			IdleConnTimeout:       30 * time.Second,
			ResponseHeaderTimeout: 30 * time.Second,
		},
	}
}

func (p *proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	addrs, err := p.lookup(r.Context(), p.host)
	if err == nil && len(addrs) == 0 {
		err = errors.New("no address")
	}
	if err != nil {
		http.Error(w, fmt.Sprintf("proxy: resolve %s: %v", p.host, err), http.StatusBadGateway)
		return
	}
	body, err := io.ReadAll(io.LimitReader(r.Body, maxProxyBody+1))
	if err != nil {
		http.Error(w, "proxy: read request body: "+err.Error(), http.StatusBadRequest)
		return
	}
	if len(body) > maxProxyBody {
		http.Error(w, "proxy: request body over 1 MiB", http.StatusRequestEntityTooLarge)
		return
	}
	first := int(p.next.Add(1) % uint64(len(addrs)))
	var errs []error
	for i := range addrs {
		addr := net.JoinHostPort(addrs[(first+i)%len(addrs)], p.port)
		resp, err := p.transport.RoundTrip(p.outbound(r, addr, body))
		if err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", addr, err))
			if !retryable(r, err) {
				break
			}
			continue
		}
		copyResponse(w, resp)
		return
	}
	http.Error(w, "proxy: "+errors.Join(errs...).Error(), http.StatusBadGateway)
}

// outbound is r addressed to one replica, with its own copy of the body.
func (p *proxy) outbound(r *http.Request, addr string, body []byte) *http.Request {
	out := r.Clone(r.Context())
	out.RequestURI = ""
	out.URL.Scheme, out.URL.Host = "http", addr
	out.Host = r.Host
	out.Body, out.ContentLength = io.NopCloser(bytes.NewReader(body)), int64(len(body))
	for _, h := range hopHeaders(r.Header) {
		out.Header.Del(h)
	}
	if ip, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
		out.Header.Set("X-Forwarded-For", ip)
	}
	return out
}

// retryable says whether a failed request may go to the next replica: any
// request whose connection was never made, and requests that change
// nothing whatever the failure.
func retryable(r *http.Request, err error) bool {
	var op *net.OpError
	if errors.As(err, &op) && op.Op == "dial" {
		return true
	}
	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return true
	}
	return false
}

func copyResponse(w http.ResponseWriter, resp *http.Response) {
	defer resp.Body.Close()
	for _, h := range hopHeaders(resp.Header) {
		resp.Header.Del(h)
	}
	for k, vs := range resp.Header {
		w.Header()[k] = vs
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

// hopHeaders are the headers meant for one connection only (RFC 9110,
// 7.6.1), which a proxy must not pass on.
func hopHeaders(h http.Header) []string {
	hop := []string{"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate", "Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade"}
	for _, v := range h.Values("Connection") {
		for _, f := range strings.Split(v, ",") {
			if f = strings.TrimSpace(f); f != "" {
				hop = append(hop, f)
			}
		}
	}
	return hop
}
