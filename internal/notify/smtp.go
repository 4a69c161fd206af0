package notify

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"mime"
	"net"
	"net/smtp"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// mail sends the text as a plain-text mail, with shoutrrr's smtp URL
// syntax: smtp://user:password@host:port/?fromaddress=a@x&toaddresses=b@y,c@z
// and the keys listed in parseSMTP.
type mail struct {
	host, addr      string
	user, password  string
	from, fromName  string
	to              []string
	subject         string
	auth            string // none, plain or crammd5
	implicitTLS     bool
	startTLS        bool
	requireStartTLS bool
	skipVerify      bool
	clientHost      string
	timeout         time.Duration
}

func parseSMTP(u *url.URL) (*mail, error) {
	m := &mail{host: u.Hostname(), user: u.User.Username(), subject: "gitopsd", auth: "unknown",
		startTLS: true, clientHost: "localhost", timeout: 10 * time.Second}
	m.password, _ = u.User.Password()
	if m.host == "" {
		return nil, errors.New("no host")
	}
	port := uint64(25)
	if p := u.Port(); p != "" {
		var err error
		if port, err = strconv.ParseUint(p, 10, 16); err != nil {
			return nil, fmt.Errorf("port %q: %w", p, err)
		}
	}
	m.addr = net.JoinHostPort(m.host, strconv.FormatUint(port, 10))
	encryption := "auto"
	for key, vals := range u.Query() {
		v := vals[0]
		var bad bool
		switch strings.ToLower(key) {
		case "fromaddress", "from":
			m.from = v
		case "fromname":
			m.fromName = v
		case "toaddresses", "to":
			for _, a := range strings.Split(v, ",") {
				if a = strings.TrimSpace(a); a != "" {
					m.to = append(m.to, a)
				}
			}
		case "subject", "title":
			m.subject = v
		case "auth":
			m.auth = strings.ToLower(v)
			bad = m.auth != "none" && m.auth != "plain" && m.auth != "crammd5" && m.auth != "unknown"
		case "encryption":
			encryption = strings.ToLower(v)
			bad = encryption != "auto" && encryption != "none" && encryption != "explicittls" && encryption != "implicittls"
		case "usestarttls", "starttls":
			m.startTLS, bad = parseBool(v)
			bad = !bad
		case "requirestarttls":
			m.requireStartTLS, bad = parseBool(v)
			bad = !bad
		case "skiptlsverify":
			m.skipVerify, bad = parseBool(v)
			bad = !bad
		case "clienthost":
			m.clientHost = v
		case "timeout":
			d, err := time.ParseDuration(v)
			bad = err != nil || d <= 0
			m.timeout = d
		case "usehtml":
			html, ok := parseBool(v)
			bad = !ok || html // the text is plain text
		default:
			return nil, fmt.Errorf("unknown key %q", key)
		}
		if bad {
			return nil, fmt.Errorf("%s=%q is not a value gitopsd takes", key, v)
		}
	}
	if m.from == "" {
		return nil, errors.New("no fromaddress")
	}
	if len(m.to) == 0 {
		return nil, errors.New("no toaddresses")
	}
	// As shoutrrr: a tag's + may come in as a space from the query.
	m.from = strings.ReplaceAll(m.from, " ", "+")
	for i, a := range m.to {
		m.to[i] = strings.ReplaceAll(a, " ", "+")
	}
	m.implicitTLS = encryption == "implicittls" || (encryption == "auto" && port == 465)
	if m.auth == "unknown" {
		m.auth = "none"
		if m.password != "" {
			m.auth = "plain"
		}
	}
	return m, nil
}

func (m *mail) Send(ctx context.Context, msg string) error {
	ctx, cancel := context.WithTimeout(ctx, m.timeout)
	defer cancel()
	tlsConfig := &tls.Config{ServerName: m.host, MinVersion: tls.VersionTLS12, InsecureSkipVerify: m.skipVerify} //nolint:gosec // the user's choice, per URL
	var conn net.Conn
	var err error
	if m.implicitTLS {
		conn, err = (&tls.Dialer{Config: tlsConfig}).DialContext(ctx, "tcp", m.addr)
	} else {
		conn, err = (&net.Dialer{}).DialContext(ctx, "tcp", m.addr)
	}
	if err != nil {
		return fmt.Errorf("connect to %s: %w", m.addr, err)
	}
	defer conn.Close()
	// net/smtp takes no context: the deadline bounds the whole exchange.
	deadline, _ := ctx.Deadline()
	_ = conn.SetDeadline(deadline)
	c, err := smtp.NewClient(conn, m.host)
	if err != nil {
		return fmt.Errorf("greeting from %s: %w", m.addr, err)
	}
	defer c.Close()
	if err := c.Hello(m.clientHost); err != nil {
		return fmt.Errorf("hello: %w", err)
	}
	if m.startTLS && !m.implicitTLS {
		if ok, _ := c.Extension("STARTTLS"); ok {
			if err := c.StartTLS(tlsConfig); err != nil {
				return fmt.Errorf("starttls: %w", err)
			}
		} else if m.requireStartTLS {
			return fmt.Errorf("%s offers no STARTTLS, and requirestarttls is set", m.addr)
		}
	}
	switch m.auth {
	case "plain":
		// net/smtp refuses to send a password in the clear, but to localhost.
		err = c.Auth(smtp.PlainAuth("", m.user, m.password, m.host))
	case "crammd5":
		err = c.Auth(smtp.CRAMMD5Auth(m.user, m.password))
	}
	if err != nil {
		return fmt.Errorf("authenticate: %w", err)
	}
	// One mail per recipient, as shoutrrr sends them: no one sees the list.
	var errs []error
	for _, to := range m.to {
		if err := m.send(c, to, msg); err != nil {
			errs = append(errs, fmt.Errorf("mail to %s: %w", to, err))
			_ = c.Reset()
		}
	}
	if err := errors.Join(errs...); err != nil {
		return err
	}
	return c.Quit()
}

func (m *mail) send(c *smtp.Client, to, msg string) error {
	if err := c.Mail(m.from); err != nil {
		return err
	}
	if err := c.Rcpt(to); err != nil {
		return err
	}
	w, err := c.Data()
	if err != nil {
		return err
	}
	from := "<" + m.from + ">"
	if m.fromName != "" {
		from = mime.QEncoding.Encode("utf-8", m.fromName) + " " + from
	}
	head := "From: " + from + "\r\n" +
		"To: <" + to + ">\r\n" +
		"Subject: " + mime.QEncoding.Encode("utf-8", m.subject) + "\r\n" +
		"Date: " + time.Now().Format(time.RFC1123Z) + "\r\n" +
		"MIME-Version: 1.0\r\n" +
		"Content-Type: text/plain; charset=utf-8\r\n" +
		"Content-Transfer-Encoding: 8bit\r\n\r\n"
	if _, err := w.Write([]byte(head + msg + "\r\n")); err != nil {
		return err
	}
	return w.Close()
}
