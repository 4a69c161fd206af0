package notify

import (
	"bufio"
	"context"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"
)

type request struct {
	method, path, query string
	header              http.Header
	body                string
}

func receiver(t *testing.T, status int) (*httptest.Server, chan request) {
	got := make(chan request, 4)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- request{r.Method, r.URL.Path, r.URL.RawQuery, r.Header, string(b)}
		w.WriteHeader(status)
	}))
	t.Cleanup(srv.Close)
	return srv, got
}

func next(t *testing.T, got chan request) request {
	t.Helper()
	select {
	case r := <-got:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("the receiver got nothing")
		return request{}
	}
}

// TestGenericSendsTextAndHeaders: shoutrrr's generic URL syntax, served by
// our own sender: @ params are headers, method is the method, other query
// keys stay on the URL, the body is the text (or JSON with template=json).
func TestGenericSendsTextAndHeaders(t *testing.T) {
	srv, got := receiver(t, http.StatusOK)
	host := strings.TrimPrefix(srv.URL, "http://")
	s, err := parse("generic+http://" + host + "/hook?@X-Token=s3cret&@authorization=Bearer+abc&method=put&room=ops")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(context.Background(), "deploy failed: web"); err != nil {
		t.Fatal(err)
	}
	r := next(t, got)
	if r.method != http.MethodPut || r.path != "/hook" || r.query != "room=ops" || r.body != "deploy failed: web" ||
		r.header.Get("X-Token") != "s3cret" || r.header.Get("Authorization") != "Bearer abc" || r.header.Get("Content-Type") != "text/plain" {
		t.Fatalf("the receiver got %+v", r)
	}

	// generic:// with disabletls, and template=json with a title and extra field.
	s, err = parse("generic://" + host + "/j?disabletls=yes&template=json&title=gitopsd&$env=prod&messagekey=text")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(context.Background(), "drift: web"); err != nil {
		t.Fatal(err)
	}
	r = next(t, got)
	var fields map[string]string
	if err := json.Unmarshal([]byte(r.body), &fields); err != nil || r.method != http.MethodPost || r.path != "/j" || r.query != "" ||
		fields["text"] != "drift: web" || fields["title"] != "gitopsd" || fields["env"] != "prod" || len(fields) != 3 ||
		r.header.Get("Content-Type") != "application/json" {
		t.Fatalf("the receiver got %+v (%v)", r, err)
	}

	bad, _ := receiver(t, http.StatusInternalServerError)
	s, err = parse("generic+" + bad.URL)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(context.Background(), "x"); err == nil || !strings.Contains(err.Error(), "500") {
		t.Fatalf("a 500 is delivered? %v", err)
	}
}

// TestNtfyThroughShoutrrrPackage: a service gitopsd takes from shoutrrr's
// own package (ntfy, host pointed at a local server) gets the line of text
// that New's notifier sends.
func TestNtfyThroughShoutrrrPackage(t *testing.T) {
	srv, got := receiver(t, http.StatusOK)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	u := "ntfy://" + strings.TrimPrefix(srv.URL, "http://") + "/gitopsd-alerts?scheme=http&title=gitopsd"
	n, err := New(ctx, "", []string{u}, "edge-02", slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	n.Send(RolledBack, "db", "db#2 unhealthy")
	r := next(t, got)
	if r.method != http.MethodPost || r.path != "/gitopsd-alerts" || r.header.Get("Title") != "gitopsd" ||
		!strings.Contains(r.body, "gitopsd on edge-02: rolled back, stack db: db#2 unhealthy") {
		t.Fatalf("ntfy got %+v", r)
	}
}

// smtpServer is a minimal SMTP receiver on 127.0.0.1: it offers AUTH PLAIN
// and no STARTTLS, and records each mail.
type smtpServer struct {
	addr  string
	mu    sync.Mutex
	auth  []string // decoded AUTH PLAIN credentials
	mails []smtpMail
}

type smtpMail struct {
	from string
	to   []string
	data string
}

func startSMTP(t *testing.T) *smtpServer {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	s := &smtpServer{addr: l.Addr().String()}
	go func() {
		for {
			c, err := l.Accept()
			if err != nil {
				return
			}
			go s.serve(c)
		}
	}()
	return s
}

func (s *smtpServer) serve(c net.Conn) {
	defer c.Close()
	r := bufio.NewReader(c)
	say := func(line string) { _, _ = io.WriteString(c, line+"\r\n") }
	say("220 test ESMTP")
	var m smtpMail
	for {
		line, err := r.ReadString('\n')
		if err != nil {
			return
		}
		line = strings.TrimRight(line, "\r\n")
		verb := strings.ToUpper(strings.SplitN(line, " ", 2)[0])
		switch {
		case verb == "EHLO":
			say("250-test")
			say("250 AUTH PLAIN")
		case verb == "AUTH":
			f := strings.Fields(line)
			b, _ := base64.StdEncoding.DecodeString(f[len(f)-1])
			s.mu.Lock()
			s.auth = append(s.auth, strings.ReplaceAll(string(b), "\x00", "|"))
			s.mu.Unlock()
			say("235 ok")
		case strings.HasPrefix(strings.ToUpper(line), "MAIL FROM:"):
			m = smtpMail{from: strings.Trim(line[len("MAIL FROM:"):], "<> ")}
			say("250 ok")
		case strings.HasPrefix(strings.ToUpper(line), "RCPT TO:"):
			m.to = append(m.to, strings.Trim(line[len("RCPT TO:"):], "<> "))
			say("250 ok")
		case verb == "DATA":
			say("354 go on")
			var b strings.Builder
			for {
				l, err := r.ReadString('\n')
				if err != nil {
					return
				}
				if l == ".\r\n" {
					break
				}
				b.WriteString(l)
			}
			m.data = b.String()
			s.mu.Lock()
			s.mails = append(s.mails, m)
			s.mu.Unlock()
			say("250 queued")
		case verb == "RSET":
			say("250 ok")
		case verb == "QUIT":
			say("221 bye")
			return
		default:
			say("502 no")
		}
	}
}

// TestSMTPDeliversMail: our smtp sender, from shoutrrr's smtp URL, logs in
// and sends one mail per recipient with the subject, from and to given.
func TestSMTPDeliversMail(t *testing.T) {
	srv := startSMTP(t)
	s, err := parse("smtp://alerts:pa55word@" + srv.addr + "/?fromaddress=gitopsd@example.com&fromname=GitOps&toaddresses=ops@example.com,oncall@example.com&subject=gitopsd+alert")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(context.Background(), "gitopsd on edge-01: deploy failed, stack web: boom\n.leading dot"); err != nil {
		t.Fatal(err)
	}
	srv.mu.Lock()
	defer srv.mu.Unlock()
	if len(srv.auth) != 1 || srv.auth[0] != "|alerts|pa55word" {
		t.Fatalf("auth: %q", srv.auth)
	}
	if len(srv.mails) != 2 {
		t.Fatalf("%d mails", len(srv.mails))
	}
	for i, to := range []string{"ops@example.com", "oncall@example.com"} {
		m := srv.mails[i]
		for _, want := range []string{"Subject: gitopsd alert\r\n", "From: GitOps <gitopsd@example.com>\r\n", "To: <" + to + ">\r\n",
			"\r\n\r\ngitopsd on edge-01: deploy failed, stack web: boom\r\n..leading dot\r\n"} {
			if !strings.Contains(m.data, want) {
				t.Fatalf("mail %d lacks %q:\n%s", i, want, m.data)
			}
		}
		if m.from != "gitopsd@example.com" || len(m.to) != 1 || m.to[0] != to {
			t.Fatalf("mail %d: from %s to %v", i, m.from, m.to)
		}
	}

	// The server offers no STARTTLS: with requirestarttls nothing is sent.
	s, err = parse("smtp://" + srv.addr + "/?from=a@example.com&to=b@example.com&requirestarttls=yes")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Send(context.Background(), "x"); err == nil || !strings.Contains(err.Error(), "STARTTLS") {
		t.Fatalf("sent without STARTTLS: %v", err)
	}
}

// TestBadURLsAreRefusedByIndex: an unknown scheme, a service gitopsd
// dropped (logger), a template it does not run, a mail URL missing its
// addresses are start-time errors naming notify.urls[i], with the
// password out of the message.
func TestBadURLsAreRefusedByIndex(t *testing.T) {
	for _, tc := range []struct{ url, want string }{
		{"nosuchservice://x", "unknown service"},
		{"logger://", "unknown service"},
		{"generic+https://h.example.com/x?template=custom", "template"},
		{"smtp://u:Sup3rSecretPass@mail.example.com/?fromaddress=a@example.com", "no toaddresses"},
		{"smtp://u:Sup3rSecretPass@mail.example.com/?from=a@example.com&to=b@example.com&bogus=1", "bogus"},
		{"slack+https://x", "custom"},
	} {
		_, err := New(context.Background(), "", []string{"generic+https://ok.example.com/h", tc.url}, "h", nil)
		if err == nil || !strings.Contains(err.Error(), "notify.urls[1]") || !strings.Contains(err.Error(), tc.want) || strings.Contains(err.Error(), "Sup3rSecretPass") {
			t.Errorf("%s: %v", tc.url, err)
		}
	}
	// URLs as shoutrrr documents them parse.
	for _, u := range []string{
		"slack://xoxb:123456789012-1234567890123-4pt8fSS1NvTg8DcTGEMb1Qfl@C001CH4NN3L",
		"discord://token@123456789",
		"telegram://110201543:AAHdqTcvCH1vGWJxfSeofSAs0K5PALDsaw@telegram?chats=@gitopsd",
		"ntfy://ntfy.sh/gitopsd",
		"gotify://gotify.example.com/Aaa.bbb.ccc.ddd",
		"pushover://shoutrrr:aToken@aUser/",
		"teams+https://example.webhook.office.com/webhookb2/11111111-4444-4444-8444-cccccccccccc@22222222-4444-4444-8444-cccccccccccc/IncomingWebhook/33333333012222222222333333333344/44444444-4444-4444-8444-cccccccccccc/V2ESyij_gAljSoUQHvZoZYzlpAoAXExyOl26dlf1xHEx05",
		"smtp://mail.example.com:465/?from=a@example.com&to=b@example.com",
	} {
		if _, err := parse(u); err != nil {
			t.Errorf("%s: %v", u, err)
		}
	}
}
