// Package webhook owns gitopsd's push trigger: an HTTP handler that checks a
// Git forge's signature (GitHub X-Hub-Signature-256, GitLab X-Gitlab-Token,
// Gitea X-Gitea-Signature, Forgejo X-Forgejo-Signature) or a plain bearer
// token, and asks for a sync at once. A request that fails the check gets
// 401 and triggers nothing.
//
// The listener faces whatever network the operator put it on, so nothing a
// client sends is read before it has shown it may be: a request without a
// signature or token header is refused from its headers alone, its body
// never read, and a body is only read (at most MaxBody bytes, a declared
// larger one refused from its Content-Length) when a signature header says
// it must be, to check its HMAC. NewServer adds what the handler cannot
// enforce itself: timeouts on every phase of a connection and a bound on
// the requests handled at once (see Limits).
//
//	POST /webhook   a forge's push event (ping and non-push events answer 200 and trigger nothing;
//	                a push to another branch than the configured one is ignored)
//	POST /sync      Authorization: Bearer <secret>
package webhook

import (
	"crypto/hmac"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strings"
)

// MaxBody is the largest request body read: forge push payloads of large
// pushes stay well under it.
const MaxBody = 1 << 20

// Handler checks requests against secret and calls trigger(source) for each
// valid push to branch ("" accepts any branch). trigger must not block.
func Handler(secret []byte, branch string, trigger func(source string), log *slog.Logger) http.Handler {
	h := &handler{secret: secret, branch: branch, trigger: trigger, log: log}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /webhook", h.webhook)
	mux.HandleFunc("POST /sync", h.sync)
	return mux
}

type handler struct {
	secret  []byte
	branch  string
	trigger func(string)
	log     *slog.Logger
}

func (h *handler) sync(w http.ResponseWriter, r *http.Request) {
	token, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || subtle.ConstantTimeCompare([]byte(token), h.secret) != 1 {
		h.refuse(w, r, "bad or missing bearer token")
		return
	}
	h.trigger("sync")
	reply(w, http.StatusAccepted, "sync queued")
}

func (h *handler) webhook(w http.ResponseWriter, r *http.Request) {
	// From the headers alone, before a byte of the body is read.
	if r.ContentLength > MaxBody {
		closeAfter(w)
		reply(w, http.StatusRequestEntityTooLarge, "body too large")
		return
	}
	if signatureHeader(r.Header) == "" {
		h.refuse(w, r, "no signature: want X-Hub-Signature-256, X-Gitlab-Token, X-Gitea-Signature or X-Forgejo-Signature")
		return
	}
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, MaxBody))
	if err != nil {
		var tooBig *http.MaxBytesError
		if errors.As(err, &tooBig) {
			reply(w, http.StatusRequestEntityTooLarge, "body too large")
			return
		}
		reply(w, http.StatusBadRequest, "cannot read the body")
		return
	}
	forge, err := h.verify(r.Header, body)
	if err != nil {
		h.refuse(w, r, err.Error())
		return
	}
	if event := eventOf(forge, r.Header); event != "push" {
		reply(w, http.StatusOK, "ignored: event "+event)
		return
	}
	var push struct {
		Ref string `json:"ref"`
	}
	_ = json.Unmarshal(body, &push) // a push without a readable ref still syncs
	if h.branch != "" && push.Ref != "" && push.Ref != "refs/heads/"+h.branch {
		reply(w, http.StatusOK, "ignored: push to "+push.Ref)
		return
	}
	h.log.Info("webhook push", "forge", forge, "ref", push.Ref)
	h.trigger(forge)
	reply(w, http.StatusAccepted, "sync queued")
}

// signatureHeaders are the headers a forge proves itself with, in the
// order verify tries them.
var signatureHeaders = []string{"X-Hub-Signature-256", "X-Gitea-Signature", "X-Forgejo-Signature", "X-Gitlab-Token"}

// signatureHeader is the first signature header hdr carries, "" for none.
func signatureHeader(hdr http.Header) string {
	for _, name := range signatureHeaders {
		if hdr.Get(name) != "" {
			return name
		}
	}
	return ""
}

// verify checks the request's signature or token and names the forge.
func (h *handler) verify(hdr http.Header, body []byte) (string, error) {
	mac := func() []byte {
		m := hmac.New(sha256.New, h.secret)
		m.Write(body)
		return m.Sum(nil)
	}
	hexEqual := func(got string) bool {
		want, err := hex.DecodeString(strings.TrimSpace(got))
		return err == nil && hmac.Equal(want, mac())
	}
	switch {
	case hdr.Get("X-Hub-Signature-256") != "":
		sig, ok := strings.CutPrefix(hdr.Get("X-Hub-Signature-256"), "sha256=")
		if !ok || !hexEqual(sig) {
			return "github", errors.New("github: X-Hub-Signature-256 does not match")
		}
		return "github", nil
	case hdr.Get("X-Gitea-Signature") != "":
		if !hexEqual(hdr.Get("X-Gitea-Signature")) {
			return "gitea", errors.New("gitea: X-Gitea-Signature does not match")
		}
		return "gitea", nil
	case hdr.Get("X-Forgejo-Signature") != "":
		if !hexEqual(hdr.Get("X-Forgejo-Signature")) {
			return "forgejo", errors.New("forgejo: X-Forgejo-Signature does not match")
		}
		return "forgejo", nil
	case hdr.Get("X-Gitlab-Token") != "":
		if subtle.ConstantTimeCompare([]byte(hdr.Get("X-Gitlab-Token")), h.secret) != 1 {
			return "gitlab", errors.New("gitlab: X-Gitlab-Token does not match")
		}
		return "gitlab", nil
	}
	return "", errors.New("no signature: want X-Hub-Signature-256, X-Gitlab-Token, X-Gitea-Signature or X-Forgejo-Signature")
}

// eventOf is the forge's event name, normalized to "push" for pushes.
func eventOf(forge string, hdr http.Header) string {
	var e string
	switch forge {
	case "github":
		e = hdr.Get("X-GitHub-Event")
	case "gitea":
		e = hdr.Get("X-Gitea-Event")
	case "forgejo":
		e = hdr.Get("X-Forgejo-Event")
	case "gitlab":
		e = hdr.Get("X-Gitlab-Event")
		if e == "Push Hook" || e == "Tag Push Hook" {
			return "push"
		}
	}
	if e == "" {
		return "push" // a forge that does not say: treat it as a push
	}
	return e
}

// refuse answers 401 and drops the connection: whatever the client still
// sends (a body nobody will read) is not waited for, as net/http would
// otherwise read up to 256 KiB of it to keep the connection alive.
func (h *handler) refuse(w http.ResponseWriter, r *http.Request, why string) {
	h.log.Warn("webhook refused", "remote", r.RemoteAddr, "path", r.URL.Path, "why", why)
	closeAfter(w)
	reply(w, http.StatusUnauthorized, "unauthorized")
}

// closeAfter makes the server close the connection after this reply.
func closeAfter(w http.ResponseWriter) {
	w.Header().Set("Connection", "close")
}

func reply(w http.ResponseWriter, code int, msg string) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	_ = json.NewEncoder(w).Encode(map[string]string{"result": msg})
}
