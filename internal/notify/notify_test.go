package notify

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"
)

// TestNotifierPostsToWebhookAndShoutrrr: an event reaches the JSON webhook
// and, as a line of text, a shoutrrr service (generic+http, the one that
// needs no chat account); a bad shoutrrr URL is refused by name.
func TestNotifierPostsToWebhookAndShoutrrr(t *testing.T) {
	hook := make(chan Event, 1)
	hookSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var e Event
		_ = json.NewDecoder(r.Body).Decode(&e)
		hook <- e
	}))
	defer hookSrv.Close()
	chat := make(chan string, 1)
	chatSrv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		chat <- string(b)
	}))
	defer chatSrv.Close()

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	generic := "generic+" + chatSrv.URL + "/notify"
	n, err := New(ctx, hookSrv.URL, []string{generic}, "edge-01", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	n.Send(DeployFailed, "web", "create web#1: image missing")
	select {
	case e := <-hook:
		if e.Event != DeployFailed || e.Host != "edge-01" || e.Stack != "web" || e.Detail != "create web#1: image missing" || e.At.IsZero() {
			t.Fatalf("webhook got %+v", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the webhook got nothing")
	}
	select {
	case msg := <-chat:
		if !strings.Contains(msg, "gitopsd on edge-01: deploy failed, stack web: create web#1: image missing") {
			t.Fatalf("shoutrrr sent %q", msg)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the shoutrrr service got nothing")
	}

	if _, err := New(ctx, "", []string{generic, "nosuchservice://x"}, "h", nil); err == nil || !strings.Contains(err.Error(), "notify.urls[1]") {
		t.Fatalf("a bad URL: %v", err)
	}
	var none *Notifier
	none.Send(Drift, "web", "nobody listens") // a nil notifier drops events
}
