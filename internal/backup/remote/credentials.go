package remote

import (
	"bufio"
	"bytes"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"
	"strings"
)

// Credentials are the KEY=value lines of a remote's credentials file. The
// values are secrets (or name files holding them): they never appear in an
// error, a log line or String.
type Credentials struct {
	// S3
	AccessKeyID     string
	SecretAccessKey string
	Region          string
	Insecure        bool // plain HTTP, for a server on a trusted network
	// SFTP
	SSHKeyFile    string
	SSHKnownHosts string
}

// String never shows a value.
func (Credentials) String() string { return "remote credentials (redacted)" }

// GoString keeps %#v from printing the values either.
func (c Credentials) GoString() string { return c.String() }

// credentialKeys are the keys each scheme accepts, and whether each is
// required.
var credentialKeys = map[Scheme]map[string]bool{
	SchemeS3:   {"AWS_ACCESS_KEY_ID": true, "AWS_SECRET_ACCESS_KEY": true, "AWS_REGION": false, "S3_INSECURE": false},
	SchemeSFTP: {"SSH_KEY_FILE": true, "SSH_KNOWN_HOSTS": true},
}

// ReadCredentials reads a credentials file for a remote of the given
// scheme: KEY=value lines, blank lines and # comments. It is strict: an
// unknown key, a key given twice, a line without "=", or a required key
// missing is an error naming the file and the line or key, never the value.
func ReadCredentials(file string, scheme Scheme) (Credentials, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return Credentials{}, fmt.Errorf("read remote credentials: %w", err)
	}
	return parseCredentials(file, data, scheme)
}

func parseCredentials(file string, data []byte, scheme Scheme) (Credentials, error) {
	allowed := credentialKeys[scheme]
	bad := func(line int, format string, args ...any) error {
		return fmt.Errorf("remote credentials %s: line %d: %s", file, line, fmt.Sprintf(format, args...))
	}
	values := map[string]string{}
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		key, value, ok := strings.Cut(line, "=")
		key = strings.TrimSpace(strings.TrimPrefix(key, "export "))
		if !ok {
			// The line may be a pasted secret: say nothing of its content.
			return Credentials{}, bad(n, "not a KEY=value line")
		}
		if _, known := allowed[key]; !known {
			return Credentials{}, bad(n, "unknown key %s for a %s remote (known: %s)", safeKey(key), scheme, knownKeys(scheme))
		}
		if _, dup := values[key]; dup {
			return Credentials{}, bad(n, "%s is set twice", key)
		}
		value = strings.TrimSpace(value)
		if len(value) >= 2 && (value[0] == '"' || value[0] == '\'') && value[len(value)-1] == value[0] {
			value = value[1 : len(value)-1]
		}
		if value == "" {
			return Credentials{}, bad(n, "%s is empty", key)
		}
		values[key] = value
	}
	if err := sc.Err(); err != nil {
		return Credentials{}, fmt.Errorf("read remote credentials %s: %w", file, err)
	}
	for _, k := range sortedKeys(allowed) {
		if allowed[k] && values[k] == "" {
			return Credentials{}, fmt.Errorf("remote credentials %s: %s is required for a %s remote", file, k, scheme)
		}
	}
	c := Credentials{
		AccessKeyID: values["AWS_ACCESS_KEY_ID"], SecretAccessKey: values["AWS_SECRET_ACCESS_KEY"], Region: values["AWS_REGION"],
		SSHKeyFile: values["SSH_KEY_FILE"], SSHKnownHosts: values["SSH_KNOWN_HOSTS"],
	}
	switch v := values["S3_INSECURE"]; v {
	case "", "false":
	case "true":
		c.Insecure = true
	default:
		return Credentials{}, fmt.Errorf("remote credentials %s: S3_INSECURE must be true or false", file)
	}
	for _, k := range []struct{ key, path string }{{"SSH_KEY_FILE", c.SSHKeyFile}, {"SSH_KNOWN_HOSTS", c.SSHKnownHosts}} {
		if k.path != "" && !filepath.IsAbs(k.path) {
			return Credentials{}, fmt.Errorf("remote credentials %s: %s must be an absolute path", file, k.key)
		}
	}
	return c, nil
}

// safeKey shows a key only when it looks like one: a line such as
// "AKIA...=" with a secret before the "=" is not echoed back.
func safeKey(k string) string {
	if len(k) > 40 {
		return "(a key too long to be one)"
	}
	for _, r := range k {
		if (r < 'A' || r > 'Z') && (r < '0' || r > '9') && r != '_' {
			return "(a key with characters other than A-Z, 0-9 and _)"
		}
	}
	return k
}

func knownKeys(s Scheme) string {
	return strings.Join(sortedKeys(credentialKeys[s]), ", ")
}

func sortedKeys(m map[string]bool) []string { return slices.Sorted(maps.Keys(m)) }
