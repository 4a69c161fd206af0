// Package notify owns gitopsd's notifications: what went wrong (a deploy
// failed, a stack was rolled back, drift, a snapshot or restore test
// failed) posted as JSON to a generic webhook, and as a line of text to chat
// or mail through shoutrrr URLs (slack://, telegram://, smtp://, ntfy://,
// ..., as Watchtower users know them), from a bounded queue so a slow or
// dead receiver never holds up the reconcile loop. The URLs are routed
// here (route.go), not by shoutrrr's router; smtp and generic are our own.
package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"time"

	"github.com/gitopsd/gitopsd/internal/secrets"
)

// Events.
const (
	DeployFailed      = "deploy_failed"
	RolledBack        = "rolled_back"
	Drift             = "drift"
	BackupFailed      = "backup_failed"
	RestoreTestFailed = "restore_test_failed"
)

// Event is one notification, as the webhook receives it.
type Event struct {
	Event  string    `json:"event"`
	Host   string    `json:"host"`
	Stack  string    `json:"stack"`
	Detail string    `json:"detail"`
	At     time.Time `json:"at"`
}

// queueSize bounds the events waiting for a slow receiver; beyond it new
// ones are dropped (and logged), never waited for.
const queueSize = 64

// Notifier posts events to a webhook URL. The zero of *Notifier (nil)
// drops everything, so callers need no check.
type Notifier struct {
	url  string
	chat []sender // one per shoutrrr URL
	// chatTo names each chat sender in the log: its URL, redacted.
	chatTo []string
	host   string
	log    *slog.Logger
	queue  chan Event
	http   *http.Client
	// redact takes secrets out of an event's detail (nil: none).
	redact func(string) string
}

// New starts a notifier posting to the webhook url and to the shoutrrr
// urls until ctx ends; with neither it returns nil. A bad shoutrrr URL, or
// one of a service gitopsd does not send to (see Schemes), is an error
// naming it.
func New(ctx context.Context, url string, urls []string, host string, log *slog.Logger) (*Notifier, error) {
	if url == "" && len(urls) == 0 {
		return nil, nil
	}
	n := &Notifier{url: url, host: host, log: log, queue: make(chan Event, queueSize), http: &http.Client{Timeout: 10 * time.Second}}
	if len(urls) > 0 {
		for i, u := range urls {
			s, err := parse(u)
			if err != nil {
				// Errors may quote the URL, token and all.
				return nil, fmt.Errorf("notify.urls[%d] (%s): %s", i, secrets.RedactURL(u), secrets.RedactURLs(err.Error()))
			}
			n.chat = append(n.chat, s)
			n.chatTo = append(n.chatTo, secrets.RedactURL(u))
		}
	}
	go n.run(ctx)
	return n, nil
}

// SetRedact makes Send pass every detail through redact first: a detail
// quotes errors, and errors quote the output of hooks and probes. Call it
// before the first Send.
func (n *Notifier) SetRedact(redact func(string) string) {
	if n != nil {
		n.redact = redact
	}
}

// Send queues an event; it never blocks.
func (n *Notifier) Send(event, stack, detail string) {
	if n == nil {
		return
	}
	if n.redact != nil {
		detail = n.redact(detail)
	}
	detail = secrets.RedactURLs(detail) // errors quote the URLs they failed to reach
	select {
	case n.queue <- Event{Event: event, Host: n.host, Stack: stack, Detail: detail, At: time.Now().UTC()}:
	default:
		n.log.Warn("notification dropped: the receiver is too slow", "event", event, "stack", stack)
	}
}

func (n *Notifier) run(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-n.queue:
			if n.url != "" {
				if err := n.post(ctx, e); err != nil {
					n.log.Warn("notification not delivered", "to", secrets.RedactURL(n.url), "event", e.Event, "stack", e.Stack, "err", secrets.RedactURLs(err.Error()))
				}
			}
			if len(n.chat) > 0 {
				msg := fmt.Sprintf("gitopsd on %s: %s, stack %s: %s", e.Host, strings.ReplaceAll(e.Event, "_", " "), e.Stack, e.Detail)
				for i, s := range n.chat {
					if err := s.Send(ctx, msg); err != nil {
						// shoutrrr's errors quote the service URL, token and all.
						n.log.Warn("notification not delivered", "to", n.chatTo[i], "event", e.Event, "stack", e.Stack, "err", secrets.RedactURLs(err.Error()))
					}
				}
			}
		}
	}
}

func (n *Notifier) post(ctx context.Context, e Event) error {
	body, err := json.Marshal(e)
	if err != nil {
		return err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, n.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := n.http.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		return fmt.Errorf("the receiver answered %s", resp.Status)
	}
	return nil
}
