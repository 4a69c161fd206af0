package notify

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// generic posts the text to a webhook, with shoutrrr's generic URL syntax:
// generic+https://host/path?... (or generic://host/path, https unless
// disabletls=yes). Query keys starting with @ are headers (@X-Token=v),
// with $ extra JSON fields; contenttype, method, template (none or json),
// title, titlekey, messagekey and disabletls are settings; every other
// query key stays on the webhook URL.
type generic struct {
	target      string
	method      string
	contentType string
	json        bool
	title       string
	titleKey    string
	messageKey  string
	headers     map[string]string
	extra       map[string]string
	client      *http.Client
}

func parseGeneric(u *url.URL) (*generic, error) {
	g := &generic{method: http.MethodPost, contentType: "application/json", titleKey: "title", messageKey: "message",
		headers: map[string]string{}, extra: map[string]string{}, client: &http.Client{Timeout: 10 * time.Second}}
	target := *u
	switch u.Scheme {
	case "generic":
		target.Scheme = "https"
	case "generic+https", "generic+http":
		target.Scheme = strings.TrimPrefix(u.Scheme, "generic+")
	default:
		return nil, fmt.Errorf("generic takes generic://, generic+http:// or generic+https://, not %s://", u.Scheme)
	}
	if u.Host == "" {
		return nil, fmt.Errorf("no host")
	}
	keep := url.Values{}
	for key, vals := range u.Query() {
		v := vals[0]
		if len(key) > 1 && key[0] == '@' {
			g.headers[headerKey(key[1:])] = v
			continue
		}
		if len(key) > 1 && key[0] == '$' {
			g.extra[key[1:]] = v
			continue
		}
		switch strings.ToLower(key) {
		case "contenttype":
			g.contentType = v
		case "method":
			g.method = strings.ToUpper(v)
		case "template":
			switch strings.ToLower(v) {
			case "":
			case "json":
				g.json = true
			default:
				return nil, fmt.Errorf("template %q: gitopsd sends the text as it is, or template=json", v)
			}
		case "title":
			g.title = v
		case "titlekey":
			g.titleKey = v
		case "messagekey":
			g.messageKey = v
		case "disabletls":
			b, ok := parseBool(v)
			if !ok {
				return nil, fmt.Errorf("disabletls=%q is not yes or no", v)
			}
			if b && u.Scheme == "generic" {
				target.Scheme = "http"
			}
		default:
			keep[key] = vals
		}
	}
	target.RawQuery = keep.Encode()
	g.target = target.String()
	return g, nil
}

// headerKey spells a header as shoutrrr does: @xToken and @X-Token are both
// X-Token.
func headerKey(k string) string {
	var b strings.Builder
	for i, c := range k {
		if 'A' <= c && c <= 'Z' {
			if i > 0 && k[i-1] != '-' {
				b.WriteByte('-')
			}
		} else if (i == 0 || k[i-1] == '-') && 'a' <= c && c <= 'z' {
			c -= 'a' - 'A'
		}
		b.WriteRune(c)
	}
	return b.String()
}

func (g *generic) Send(ctx context.Context, msg string) error {
	body, contentType := []byte(msg), "text/plain"
	if g.json {
		fields := map[string]string{}
		for k, v := range g.extra {
			fields[k] = v
		}
		if g.title != "" {
			fields[g.titleKey] = g.title
		}
		fields[g.messageKey] = msg
		var err error
		if body, err = json.Marshal(fields); err != nil {
			return err
		}
		contentType = g.contentType
	}
	req, err := http.NewRequestWithContext(ctx, g.method, g.target, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Content-Type", contentType)
	for k, v := range g.headers {
		req.Header.Set(k, v)
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode >= 400 {
		return fmt.Errorf("the receiver answered %s", resp.Status)
	}
	return nil
}

// parseBool reads a shoutrrr boolean: yes/no, true/false, 1/0, y/n.
func parseBool(v string) (value, ok bool) {
	switch strings.ToLower(v) {
	case "yes", "true", "1", "y":
		return true, true
	case "no", "false", "0", "n":
		return false, true
	}
	return false, false
}
