package webhook

import (
	"bufio"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// answerBound is how long a refusal decided from the headers may take. It
// is no timing claim: a handler that waits for the body never answers at
// all, as the client below never sends it.
const answerBound = 10 * time.Second

// TestRefusedBeforeTheBodyIsRead: a request that cannot be allowed (no
// signature header, a wrong bearer token, a declared body over MaxBody) is
// answered from its headers alone. The client declares a body and never
// sends it, so a handler that read the body first, or a server that
// drained it to keep the connection, would never answer.
func TestRefusedBeforeTheBodyIsRead(t *testing.T) {
	triggered := 0
	srv := httptest.NewServer(Handler([]byte("s3cret"), "main", func(string) { triggered++ }, slog.New(slog.NewTextHandler(io.Discard, nil))))
	defer srv.Close()
	addr := strings.TrimPrefix(srv.URL, "http://")
	for _, tc := range []struct {
		name    string
		request string
		code    int
	}{
		{"unsigned push", "POST /webhook HTTP/1.1\r\nHost: x\r\nX-GitHub-Event: push\r\nContent-Length: 1048576\r\n\r\n", http.StatusUnauthorized},
		{"unsigned, a small body", "POST /webhook HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\n", http.StatusUnauthorized},
		{"unsigned, chunked", "POST /webhook HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n", http.StatusUnauthorized},
		{"wrong bearer token", "POST /sync HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer nope\r\nContent-Length: 100\r\n\r\n", http.StatusUnauthorized},
		{"signed, declared too large", "POST /webhook HTTP/1.1\r\nHost: x\r\nX-Hub-Signature-256: sha256=00\r\nContent-Length: " + fmt.Sprint(MaxBody+1) + "\r\n\r\n", http.StatusRequestEntityTooLarge},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if _, err := io.WriteString(conn, tc.request); err != nil {
				t.Fatal(err)
			}
			began := time.Now()
			_ = conn.SetReadDeadline(began.Add(answerBound))
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatalf("no answer without the body within %s: %v", answerBound, err)
			}
			resp.Body.Close()
			t.Logf("%d after %s, no body sent", resp.StatusCode, time.Since(began).Round(time.Millisecond))
			if resp.StatusCode != tc.code {
				t.Fatalf("status %d, want %d", resp.StatusCode, tc.code)
			}
			if !resp.Close {
				t.Fatal("the connection is kept alive after a refusal: the unread body would be parsed as the next request")
			}
		})
	}
	if triggered != 0 {
		t.Fatalf("refused requests triggered %d syncs", triggered)
	}
}

// TestBoundedTurnsAwayExcess: with every slot taken by a request that is
// still being handled, one more gets 503 with Retry-After at once, and a
// slot freed lets the next one in.
func TestBoundedTurnsAwayExcess(t *testing.T) {
	const n = 3
	entered, release := make(chan struct{}, n), make(chan struct{})
	srv := httptest.NewServer(Bounded(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			entered <- struct{}{}
			<-release
		}
		w.WriteHeader(http.StatusNoContent)
	}), n))
	defer srv.Close()
	held := make(chan int, n)
	for range n {
		go func() {
			resp, err := http.Get(srv.URL + "/hold")
			if err != nil {
				held <- -1
				return
			}
			resp.Body.Close()
			held <- resp.StatusCode
		}()
	}
	for range n {
		<-entered
	}
	resp, err := http.Get(srv.URL + "/other")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
		t.Fatalf("request %d of %d: status %d, Retry-After %q; want 503 with Retry-After", n+1, n, resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	close(release)
	for range n {
		if code := <-held; code != http.StatusNoContent {
			t.Fatalf("a request inside the bound got %d", code)
		}
	}
	resp, err = http.Get(srv.URL + "/other")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("with the slots free again: status %d", resp.StatusCode)
	}
}
