package config

import (
	"errors"
	"fmt"
	"net"
	"net/url"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"filippo.io/age"
)

// BackupRemote is where snapshots are copied off the host (backup.remote):
// the keys are checked here, the copies are backup.Offsite's.
type BackupRemote struct {
	// URL is s3://host:port/bucket/prefix or sftp://user@host:port/path;
	// "" means no remote.
	URL string `yaml:"url"`
	// CredentialsFile holds KEY=value lines (keys, or the SSH key and
	// known_hosts files); the URL never holds a secret.
	CredentialsFile string `yaml:"credentials_file"`
	// Recipients are age public keys (age1...) remote copies are encrypted
	// to; none: copies are stored as the snapshots are.
	Recipients []string `yaml:"recipients"`
}

// Enabled reports whether a remote is configured.
func (r BackupRemote) Enabled() bool { return r.URL != "" }

// validate checks backup.remote; the credentials file is read when the
// remote is opened, like the other key files, but must be named.
func (r BackupRemote) validate() error {
	bad := func(key, msg string) error { return &Error{Key: "backup.remote." + key, Msg: msg} }
	if r.URL == "" {
		switch {
		case r.CredentialsFile != "":
			return bad("url", "required with backup.remote.credentials_file")
		case len(r.Recipients) > 0:
			return bad("url", "required with backup.remote.recipients")
		}
		return nil
	}
	if _, err := ParseRemoteURL(r.URL); err != nil {
		return bad("url", err.Error())
	}
	switch {
	case r.CredentialsFile == "":
		return bad("credentials_file", "required with backup.remote.url (KEY=value lines: the access keys for s3, SSH_KEY_FILE and SSH_KNOWN_HOSTS for sftp)")
	case !filepath.IsAbs(r.CredentialsFile):
		return bad("credentials_file", "must be an absolute path")
	}
	for i, rec := range r.Recipients {
		if _, err := age.ParseX25519Recipient(rec); err != nil {
			return bad(fmt.Sprintf("recipients[%d]", i), fmt.Sprintf("%q is not an age public key (age1...)", rec))
		}
	}
	return nil
}

// RemoteScheme is the kind of a backup remote, the scheme of its URL.
type RemoteScheme string

const (
	RemoteS3   RemoteScheme = "s3"
	RemoteSFTP RemoteScheme = "sftp"
)

// RemoteLocation is a parsed backup.remote.url: s3://host:port/bucket/prefix or
// sftp://user@host:port/path.
type RemoteLocation struct {
	Scheme RemoteScheme
	// Host is host:port, with the scheme's default port when the URL has none.
	Host string
	// User is the SSH user (SFTP only).
	User string
	// Bucket is the S3 bucket (S3 only).
	Bucket string
	// Prefix is the folder inside the bucket (S3) or on the server (SFTP)
	// that holds the hosts' snapshots; "" is the bucket's root. SFTP
	// paths are relative to the login folder unless they start with "//"
	// (sftp://u@h/abs/path is "abs/path", sftp://u@h//abs/path is "/abs/path").
	Prefix string
}

// String is the location as a URL, which never holds a secret: the URL
// carries none (credentials come from a file).
func (l RemoteLocation) String() string {
	switch l.Scheme {
	case RemoteS3:
		return "s3://" + path.Join(l.Host, l.Bucket, l.Prefix)
	case RemoteSFTP:
		p := l.Prefix
		if strings.HasPrefix(p, "/") {
			p = "/" + p
		} else if p != "" {
			p = "/" + p
		}
		return "sftp://" + l.User + "@" + l.Host + p
	}
	return string(l.Scheme) + "://" + l.Host
}

// ParseRemoteURL checks a backup remote URL and splits it. Its errors say what is wrong
// without repeating the URL's userinfo, which should not be there anyway.
func ParseRemoteURL(raw string) (RemoteLocation, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return RemoteLocation{}, errors.New("not a URL such as s3://host:9000/bucket/prefix or sftp://user@host:22/path")
	}
	var l RemoteLocation
	switch RemoteScheme(u.Scheme) {
	case RemoteS3:
		l.Scheme = RemoteS3
		if u.User != nil {
			return RemoteLocation{}, errors.New("s3 URL must not hold credentials: put them in credentials_file")
		}
		p := strings.Trim(u.Path, "/")
		bucket, prefix, _ := strings.Cut(p, "/")
		if bucket == "" {
			return RemoteLocation{}, errors.New("s3 URL needs a bucket: s3://host:port/bucket[/prefix]")
		}
		l.Bucket, l.Prefix = bucket, cleanRemotePrefix(prefix)
		l.Host, err = remoteHostPort(u, "443")
	case RemoteSFTP:
		l.Scheme = RemoteSFTP
		if u.User == nil || u.User.Username() == "" {
			return RemoteLocation{}, errors.New("sftp URL needs a user: sftp://user@host:port/path")
		}
		if _, has := u.User.Password(); has {
			return RemoteLocation{}, errors.New("sftp URL must not hold a password: the key comes from credentials_file")
		}
		l.User = u.User.Username()
		p := strings.TrimPrefix(u.Path, "/")
		abs := strings.HasPrefix(p, "/")
		l.Prefix = cleanRemotePrefix(p)
		if abs {
			l.Prefix = "/" + l.Prefix
		}
		l.Host, err = remoteHostPort(u, "22")
	default:
		return RemoteLocation{}, fmt.Errorf("scheme %q is not supported (s3 or sftp)", u.Scheme)
	}
	if err != nil {
		return RemoteLocation{}, err
	}
	if u.RawQuery != "" || u.Fragment != "" {
		return RemoteLocation{}, errors.New("URL must not have a query or fragment")
	}
	return l, nil
}

func remoteHostPort(u *url.URL, defaultPort string) (string, error) {
	host, port := u.Hostname(), u.Port()
	if host == "" {
		return "", errors.New("URL needs a host")
	}
	if port == "" {
		port = defaultPort
	}
	if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
		return "", fmt.Errorf("port %q is not a number from 1 to 65535", port)
	}
	return net.JoinHostPort(host, port), nil
}

func cleanRemotePrefix(p string) string {
	p = strings.Trim(path.Clean("/"+p), "/")
	return p
}
