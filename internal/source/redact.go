package source

import (
	"net/url"
	"strings"
)

// Redact hides credentials in a URL before it reaches an error, a log or
// status: a password becomes REDACTED, and so does a lone HTTP(S) user name,
// since tokens are often passed that way (https://<token>@host/...). It works
// on the raw string because URLs that url.Parse rejects must be redacted too.
func Redact(raw string) string {
	i := strings.Index(raw, "://")
	if i < 0 {
		return raw
	}
	scheme := strings.ToLower(raw[:i])
	rest := raw[i+3:]
	authority := rest
	if end := strings.IndexAny(authority, "/?#"); end >= 0 {
		authority = authority[:end]
	}
	at := strings.LastIndexByte(authority, '@')
	if at < 0 {
		return raw
	}
	userinfo := authority[:at]
	var repl string
	if user, _, hasPass := strings.Cut(userinfo, ":"); hasPass {
		repl = user + ":REDACTED"
	} else if scheme == "http" || scheme == "https" {
		repl = "REDACTED"
	} else {
		return raw
	}
	return raw[:i+3] + repl + rest[at:]
}

// urlSecrets are the credentials inside a URL, raw and decoded, for scrub.
func urlSecrets(raw string) []string {
	i := strings.Index(raw, "://")
	if i < 0 {
		return nil
	}
	authority := raw[i+3:]
	if end := strings.IndexAny(authority, "/?#"); end >= 0 {
		authority = authority[:end]
	}
	at := strings.LastIndexByte(authority, '@')
	if at < 0 {
		return nil
	}
	user, pass, hasPass := strings.Cut(authority[:at], ":")
	secret := pass
	if !hasPass {
		scheme := strings.ToLower(raw[:i])
		if scheme != "http" && scheme != "https" {
			return nil
		}
		secret = user
	}
	if secret == "" {
		return nil
	}
	out := []string{secret}
	if dec, err := url.PathUnescape(secret); err == nil && dec != secret {
		out = append(out, dec)
	}
	return out
}

// scrubbedError is err with secrets cut out of its text. It still unwraps, so
// errors.Is keeps working for callers who check for cancellation.
type scrubbedError struct {
	msg string
	err error
}

func (e *scrubbedError) Error() string { return e.msg }
func (e *scrubbedError) Unwrap() error { return e.err }

// scrub removes secrets from err's text. go-git redacts the URLs it prints,
// but not every message it passes on (url.Parse errors quote the input), so
// the known secrets are cut out of the final text as a second line of defence.
// It also folds the text onto one line: servers' reasons arrive with
// newlines, and the message ends up in a log line and in status.
func scrub(err error, secrets []string) error {
	if err == nil {
		return nil
	}
	msg := err.Error()
	clean := msg
	if strings.ContainsAny(clean, "\r\n") {
		clean = strings.Join(strings.Fields(clean), " ")
	}
	for _, s := range secrets {
		if s != "" {
			clean = strings.ReplaceAll(clean, s, "REDACTED")
		}
	}
	if clean == msg {
		return err
	}
	return &scrubbedError{msg: clean, err: err}
}
