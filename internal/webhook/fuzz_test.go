package webhook_test

import (
	"bytes"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/gitopsd/gitopsd/internal/webhook"
)

// fuzzSecret is long and random-looking so that the fuzzer cannot guess a
// token equal to it: a trigger without a computed signature is a forgery.
const (
	fuzzSecret = "f8Qz3vR1-webhook-fuzz-secret-7d0c5e2a9b4f"
	fuzzBranch = "main"
)

// The ways a request can claim to be allowed, one per forge, and /sync.
const (
	viaGitHub = iota
	viaGitLab
	viaGitea
	viaForgejo
	viaBearer
	viaCount
)

var (
	sigHeader   = [...]string{"X-Hub-Signature-256", "X-Gitlab-Token", "X-Gitea-Signature", "X-Forgejo-Signature", "Authorization"}
	eventHeader = [...]string{"X-GitHub-Event", "X-Gitlab-Event", "X-Gitea-Event", "X-Forgejo-Event", ""}
	source      = [...]string{"github", "gitlab", "gitea", "forgejo", "sync"}
)

// FuzzWebhook sends the handler requests with a fuzzed body, event and
// signature header, for each forge and for /sync. When signed is set the
// test computes the right signature or token for the body; otherwise the
// header carries the fuzzed sig. A decoy, when not empty, is set as
// another forge's signature header. kind picks the forge (kind % 5) and,
// for a few values, pads the body past webhook.MaxBody.
//
// The handler must never trigger for a request the test did not sign, for
// a non-push event, or for a push that names another branch; must trigger
// for a signed push to the branch with no decoy; answers 202 exactly when
// it triggers, with a JSON body; and refuses an oversized body with 413.
func FuzzWebhook(f *testing.F) {
	push := []byte(`{"ref":"refs/heads/main","before":"0000","after":"1111","repository":{"full_name":"ops/fleet"}}`)
	other := []byte(`{"ref":"refs/heads/feature"}`)
	tag := []byte(`{"ref":"refs/tags/v1.0.0"}`)
	for k := range uint8(viaCount) {
		f.Add(k, push, true, "", "push", "")
		f.Add(k, push, false, "sha256=00", "push", "")
		f.Add(k, other, true, "", "push", "")
		f.Add(k, push, true, "", "ping", "")
		f.Add(k, push, true, "", "", "sha256=00")
		f.Add(k, []byte(`{}`), true, "", "", "")
		f.Add(k, []byte("not json"), false, "", "push", "")
		f.Add(k+250, push, true, "", "push", "")
	}
	f.Add(uint8(viaGitLab), push, true, "", "Push Hook", "")
	f.Add(uint8(viaGitLab), tag, true, "", "Tag Push Hook", "")
	f.Add(uint8(viaGitLab), push, true, "", "Merge Request Hook", "")
	f.Add(uint8(viaGitHub), []byte(`{"ref":"refs/heads/main","ref":"refs/heads/other"}`), true, "", "push", "")
	f.Add(uint8(viaGitHub), []byte(`{"Ref":"refs/heads/main"}`), true, "", "push", "")
	f.Add(uint8(viaGitHub), []byte(`{"ref":["refs/heads/other"]}`), true, "", "push", "")
	f.Add(uint8(viaGitHub), []byte("{\"ref\":\"refs/heads/main\x00\"}"), true, "", "push", "")
	f.Add(uint8(viaGitHub), push, false, "sha256= "+sign(fuzzSecret+"x", push), "push", "")
	f.Add(uint8(viaGitea), push, false, "ZZ", "push", "")
	f.Add(uint8(viaBearer), []byte{}, false, "Bearer ", "", "")
	f.Add(uint8(viaBearer), []byte{}, false, "bearer "+fuzzSecret[:10], "", "")

	f.Fuzz(func(t *testing.T, kind uint8, body []byte, signed bool, sig, event, decoy string) {
		via := int(kind % viaCount)
		oversize := kind >= 250 && via != viaBearer // /sync reads no body
		if oversize {
			body = append(body, bytes.Repeat([]byte(" "), max(0, webhook.MaxBody+1-len(body)))...)
		}

		path := "/webhook"
		value := sig
		switch {
		case via == viaBearer:
			path = "/sync"
			if signed {
				value = "Bearer " + fuzzSecret
			}
		case !signed:
		case via == viaGitHub:
			value = "sha256=" + sign(fuzzSecret, body)
		case via == viaGitLab:
			value = fuzzSecret
		default:
			value = sign(fuzzSecret, body)
		}
		req := httptest.NewRequest(http.MethodPost, path, bytes.NewReader(body))
		req.Header.Set(sigHeader[via], value)
		if h := eventHeader[via]; h != "" {
			req.Header.Set(h, event)
		}
		if decoy != "" {
			req.Header.Set(sigHeader[(via+1)%viaBearer], decoy)
		}

		var triggered []string
		h := webhook.Handler([]byte(fuzzSecret), fuzzBranch, func(src string) { triggered = append(triggered, src) }, slog.New(slog.NewTextHandler(io.Discard, nil)))
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		code := rec.Code

		switch code {
		case http.StatusOK, http.StatusAccepted, http.StatusBadRequest, http.StatusUnauthorized, http.StatusRequestEntityTooLarge:
		default:
			t.Fatalf("status %d", code)
		}
		var reply struct {
			Result *string `json:"result"`
		}
		if err := json.Unmarshal(rec.Body.Bytes(), &reply); err != nil || reply.Result == nil {
			t.Errorf("reply %q is not {\"result\": ...}: %v", rec.Body.String(), err)
		}
		if len(triggered) > 1 {
			t.Fatalf("one request triggered %d times: %v", len(triggered), triggered)
		}
		if (len(triggered) == 1) != (code == http.StatusAccepted) {
			t.Fatalf("status %d but triggered %v", code, triggered)
		}

		if oversize {
			if code != http.StatusRequestEntityTooLarge && code != http.StatusBadRequest {
				t.Fatalf("a %d-byte body (limit %d) got status %d", len(body), webhook.MaxBody, code)
			}
			return
		}
		if len(triggered) == 0 {
			// A signed push to the branch, with nothing else claiming the
			// request, must go through.
			if signed && decoy == "" && isPush(via, event) && refOf(body) == "refs/heads/"+fuzzBranch {
				t.Fatalf("signed %s push to %s got status %d, no trigger", source[via], fuzzBranch, code)
			}
			return
		}

		// Triggered: it must be a request the test signed...
		if !signed {
			t.Fatalf("SECURITY: unsigned request triggered a sync (via %s, header %q, decoy %q, body %q)", source[via], value, decoy, body)
		}
		if triggered[0] != source[via] {
			t.Fatalf("triggered as %q, want %q", triggered[0], source[via])
		}
		if via == viaBearer {
			return
		}
		// ...for a push event...
		if !isPush(via, event) {
			t.Fatalf("%s event %q triggered a sync", source[via], event)
		}
		// ...that names the branch. A push whose ref cannot be read syncs
		// too, by design (webhook.go): the sync only ever fetches the
		// configured branch, so that costs one sync, not a wrong deploy.
		if ref := refOf(body); ref != "" && ref != "refs/heads/"+fuzzBranch {
			t.Fatalf("push to %q triggered a sync of %s", ref, fuzzBranch)
		}
	})
}

// isPush says whether a forge's event header names a push; a forge that
// sends no event header is taken to push. GitLab's pushes are "Push Hook"
// and "Tag Push Hook"; the handler takes a plain "push" from it too.
func isPush(via int, event string) bool {
	if via == viaGitLab && (event == "Push Hook" || event == "Tag Push Hook") {
		return true
	}
	return event == "" || event == "push"
}

// refOf is the ref a push payload names, as Go reads JSON; "" if none.
func refOf(body []byte) string {
	var p struct {
		Ref string `json:"ref"`
	}
	if json.Unmarshal(body, &p) != nil {
		return ""
	}
	return p.Ref
}

func sign(secret string, body []byte) string {
	m := hmac.New(sha256.New, []byte(secret))
	m.Write(body)
	return hex.EncodeToString(m.Sum(nil))
}

// TestWebhookBodyLimitEveryForge signs a body of exactly webhook.MaxBody
// bytes and one a byte longer for each forge: the first is a push, the
// second is refused with 413 before its signature is even checked.
func TestWebhookBodyLimitEveryForge(t *testing.T) {
	for via := range viaBearer {
		for _, size := range []int{webhook.MaxBody, webhook.MaxBody + 1} {
			body := []byte(`{"ref":"refs/heads/main"}`)
			body = append(body, bytes.Repeat([]byte(" "), size-len(body))...)
			value := sign(fuzzSecret, body)
			switch via {
			case viaGitHub:
				value = "sha256=" + value
			case viaGitLab:
				value = fuzzSecret
			}
			req := httptest.NewRequest(http.MethodPost, "/webhook", bytes.NewReader(body))
			req.Header.Set(sigHeader[via], value)
			triggered := 0
			h := webhook.Handler([]byte(fuzzSecret), fuzzBranch, func(string) { triggered++ }, slog.New(slog.NewTextHandler(io.Discard, nil)))
			rec := httptest.NewRecorder()
			h.ServeHTTP(rec, req)
			want, wantTriggers := http.StatusAccepted, 1
			if size > webhook.MaxBody {
				want, wantTriggers = http.StatusRequestEntityTooLarge, 0
			}
			if rec.Code != want || triggered != wantTriggers {
				t.Errorf("%s, %d-byte body: status %d, %d triggers; want %d, %d", source[via], size, rec.Code, triggered, want, wantTriggers)
			}
		}
	}
}
