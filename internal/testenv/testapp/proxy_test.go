package main

import (
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// upstream serves on 127.0.0.1 and answers with the method and body it got.
func upstream(t *testing.T) (port string) {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Seen-Host", r.Host)
		io.WriteString(w, r.Method+" "+string(b))
	}))
	t.Cleanup(srv.Close)
	_, port, _ = net.SplitHostPort(srv.Listener.Addr().String())
	return port
}

func fixedLookup(addrs ...string) func(context.Context, string) ([]string, error) {
	return func(context.Context, string) ([]string, error) { return addrs, nil }
}

// TestProxySkipsADeadReplica: with one of two addresses refusing (nothing
// listens on 127.0.0.2), every request still reaches the live one, bodies
// included, whichever address the rotation tries first.
func TestProxySkipsADeadReplica(t *testing.T) {
	port := upstream(t)
	p := newProxy("app:"+port, fixedLookup("127.0.0.2", "127.0.0.1"), 500*time.Millisecond)
	front := httptest.NewServer(p)
	defer front.Close()
	for i := range 6 {
		method, body := http.MethodGet, ""
		if i%2 == 1 {
			method, body = http.MethodPost, "payload"
		}
		req, _ := http.NewRequest(method, front.URL+"/x", strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(got) != method+" "+body {
			t.Fatalf("request %d: %s %q, want 200 %q", i, resp.Status, got, method+" "+body)
		}
		if h := resp.Header.Get("X-Seen-Host"); h != strings.TrimPrefix(front.URL, "http://") {
			t.Fatalf("upstream saw Host %q, want the client's %q", h, strings.TrimPrefix(front.URL, "http://"))
		}
	}
}

// TestProxyWithoutReplicas: nothing to forward to is a 502 naming why.
func TestProxyWithoutReplicas(t *testing.T) {
	port := upstream(t)
	for name, lookup := range map[string]func(context.Context, string) ([]string, error){
		"all dead":   fixedLookup("127.0.0.2", "127.0.0.3"),
		"no address": fixedLookup(),
	} {
		p := newProxy("app:"+port, lookup, 500*time.Millisecond)
		rec := httptest.NewRecorder()
		p.ServeHTTP(rec, httptest.NewRequest(http.MethodGet, "/", nil))
		if rec.Code != http.StatusBadGateway || !strings.HasPrefix(rec.Body.String(), "proxy: ") {
			t.Errorf("%s: %d %q, want 502 with the proxy's reason", name, rec.Code, rec.Body.String())
		}
	}
}
