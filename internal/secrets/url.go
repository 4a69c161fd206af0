package secrets

import (
	"log/slog"
	"regexp"
	"strings"
)

// URLs carry credentials in four places, and RedactURL takes each out:
//
//   - the userinfo: https://user:PASSWORD@host, and the bare token of
//     https://TOKEN@host or of shoutrrr's slack://TOKEN@channel,
//     discord://TOKEN@id, telegram://TOKEN@telegram (an ssh or sftp user
//     name is a name, and stays);
//   - query values whose key names a credential: ?token=, ?access_token=,
//     ?key=, ?api_key=, ?secret=, ?sig=, ?signature=, ?password=,
//     X-Amz-Credential/X-Amz-Signature, ...;
//   - the path of a webhook: what follows /services/ (Slack), /webhooks/
//     (Discord, Teams), /hooks/ or /hook/ (Mattermost, generic receivers),
//     and Telegram's /bot<TOKEN>;
//   - any other path segment that looks like a generated token (see
//     looksGenerated; hex digests are left as they are).
//
// The host, the scheme and the shape stay, so a log still says where a
// delivery went.
const redacted = "REDACTED"

// RedactURL returns raw with every credential it can carry replaced by
// REDACTED. Something that is not a URL comes back as it was.
func RedactURL(raw string) string {
	i := strings.Index(raw, "://")
	if i <= 0 {
		return raw
	}
	scheme := strings.ToLower(raw[:i])
	rest := raw[i+3:]
	authority, tail := rest, ""
	if end := strings.IndexAny(rest, "/?#"); end >= 0 {
		authority, tail = rest[:end], rest[end:]
	}
	if scheme != "http" && scheme != "https" {
		// shoutrrr puts slashes in tokens: slack://hook:T0/B0/XX@webhook.
		q := len(rest)
		if end := strings.IndexAny(rest, "?#"); end >= 0 {
			q = end
		}
		if at := strings.LastIndexByte(rest[:q], '@'); at > len(authority) {
			end := at + len(rest[at:])
			if i := strings.IndexAny(rest[at:], "/?#"); i >= 0 {
				end = at + i
			}
			authority, tail = rest[:end], rest[end:]
		}
	}
	if at := strings.LastIndexByte(authority, '@'); at >= 0 {
		authority = redactUserinfo(scheme, authority[:at]) + authority[at:]
	}
	path, query, fragment := tail, "", ""
	if h := strings.IndexByte(path, '#'); h >= 0 {
		path, fragment = path[:h], path[h:]
	}
	if q := strings.IndexByte(path, '?'); q >= 0 {
		path, query = path[:q], path[q:]
	}
	return raw[:i+3] + authority + redactPath(path) + redactQuery(query) + fragment
}

// RedactURLs redacts every URL found in text (an error message, a log
// line): Go's HTTP client quotes the URL it failed to reach.
func RedactURLs(text string) string {
	if !strings.Contains(text, "://") {
		return text
	}
	return urlPattern.ReplaceAllStringFunc(text, RedactURL)
}

var urlPattern = regexp.MustCompile(`[A-Za-z][A-Za-z0-9+.-]*://[^\s"'<>` + "`" + `]+`)

func redactUserinfo(scheme, userinfo string) string {
	if userinfo == "" {
		return userinfo
	}
	if user, _, hasPass := strings.Cut(userinfo, ":"); hasPass {
		return user + ":" + redacted
	}
	switch scheme {
	case "ssh", "git+ssh", "ssh+git", "sftp", "scp":
		return userinfo // a login name, not a secret
	}
	return redacted
}

// webhookMarkers are path segments after which a webhook URL's path is
// its secret.
var webhookMarkers = map[string]bool{"services": true, "webhooks": true, "webhook": true, "hooks": true, "hook": true, "webhookb2": true}

func redactPath(path string) string {
	if path == "" {
		return path
	}
	segs := strings.Split(path, "/")
	secret := false
	for i, s := range segs {
		switch {
		case s == "":
		case secret:
			segs[i] = redacted
		case webhookMarkers[strings.ToLower(s)]:
			secret = true
		case len(s) > 3 && strings.HasPrefix(s, "bot") && strings.Contains(s, ":"):
			segs[i] = "bot" + redacted // Telegram: /bot<id>:<token>/sendMessage
		case looksGenerated(s):
			segs[i] = redacted
		}
	}
	return strings.Join(segs, "/")
}

// looksGenerated says whether a path segment looks like a token: letters
// and digits (and - or _), at least 20 of them in mixed case, or at least
// 32 in one case. A hex digest (a commit, an image layer) is not one, nor
// is a repository's name (lower case words and numbers).
func looksGenerated(s string) bool {
	if len(s) < 20 {
		return false
	}
	var lower, upper, digits, hex int
	for _, c := range s {
		switch {
		case c >= '0' && c <= '9':
			digits++
			hex++
		case c >= 'a' && c <= 'z':
			lower++
			if c <= 'f' {
				hex++
			}
		case c >= 'A' && c <= 'Z':
			upper++
		case c == '-' || c == '_':
		default:
			return false // a file name, a version: dots and the like
		}
	}
	if digits == 0 || hex == len(s) {
		return false
	}
	return (lower > 0 && upper > 0) || (len(s) >= 32 && !strings.ContainsAny(s, "-_"))
}

// credentialKeys are parts of query keys whose values are credentials.
var credentialKeys = []string{"token", "key", "secret", "sig", "pass", "pwd", "auth", "credential", "session", "code"}

func redactQuery(query string) string {
	if len(query) < 2 {
		return query
	}
	pairs := strings.Split(query[1:], "&")
	for i, p := range pairs {
		k, _, ok := strings.Cut(p, "=")
		if !ok {
			continue
		}
		lk := strings.ToLower(k)
		for _, c := range credentialKeys {
			if strings.Contains(lk, c) {
				pairs[i] = k + "=" + redacted
				break
			}
		}
	}
	return "?" + strings.Join(pairs, "&")
}

// URLHandler wraps a log handler so that every URL in a record's message
// and string or error attributes has its credentials redacted: one place
// covers the notification URLs, the source URL, and whatever a library
// quotes in an error.
func URLHandler(h slog.Handler) slog.Handler { return &redactHandler{redact: RedactURLs, inner: h} }
