package source

import (
	"encoding/base64"
	"errors"
	"fmt"
	"strings"
	"time"

	"golang.org/x/crypto/ssh"
)

// allowed_signers files.

// allowedSigner is one line of an allowed_signers file.
type allowedSigner struct {
	line                    int
	principals              []string
	key                     []byte // the public key in SSH wire format
	namespaces              []string
	validAfter, validBefore time.Time // zero: no bound

	// The options as written, for messages.
	namespacesOpt, validAfterOpt, validBeforeOpt string
}

// refuses says why e does not allow a commit signature made at when, or ""
// if it does.
func (e allowedSigner) refuses(when time.Time) string {
	switch {
	case e.namespaces != nil && !matchPatternList(sshNamespace, e.namespaces):
		return fmt.Sprintf("line %d allows it only for namespaces=%q, which does not include %q", e.line, e.namespacesOpt, sshNamespace)
	case !e.validAfter.IsZero() && when.Before(e.validAfter):
		return fmt.Sprintf("line %d has valid-after=%q and the commit is dated %s, before that", e.line, e.validAfterOpt, when.Format(time.RFC3339))
	case !e.validBefore.IsZero() && when.After(e.validBefore):
		return fmt.Sprintf("line %d has valid-before=%q and the commit is dated %s, after that", e.line, e.validBeforeOpt, when.Format(time.RFC3339))
	}
	return ""
}

// sshKeyTypes are the key types allowed_signers may list: plain public
// keys, not certificates.
var sshKeyTypes = map[string]bool{
	ssh.KeyAlgoED25519:    true,
	ssh.KeyAlgoSKED25519:  true,
	ssh.KeyAlgoECDSA256:   true,
	ssh.KeyAlgoECDSA384:   true,
	ssh.KeyAlgoECDSA521:   true,
	ssh.KeyAlgoSKECDSA256: true,
	ssh.KeyAlgoRSA:        true,
}

// parseAllowedSigners parses an allowed_signers file; errors name the line.
func parseAllowedSigners(data []byte) ([]allowedSigner, error) {
	var signers []allowedSigner
	for n, line := range strings.Split(string(data), "\n") {
		line = strings.TrimSpace(line)
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		e, err := parseAllowedSignerLine(line)
		if err != nil {
			return nil, fmt.Errorf("line %d: %w", n+1, err)
		}
		e.line = n + 1
		signers = append(signers, e)
	}
	return signers, nil
}

// parseAllowedSignerLine parses `principals [options] keytype base64-key
// [comment]`.
func parseAllowedSignerLine(line string) (allowedSigner, error) {
	var e allowedSigner
	fields, err := splitSignerFields(line, 4)
	if err != nil {
		return e, err
	}
	e.principals = strings.Split(unquoteOption(fields[0]), ",")
	for _, p := range e.principals {
		if p == "" {
			return e, fmt.Errorf("empty principal in %q", fields[0])
		}
	}
	fields = fields[1:]
	if len(fields) > 0 && !sshKeyTypes[fields[0]] && looksLikeOptions(fields[0]) {
		if err := e.parseOptions(fields[0]); err != nil {
			return e, err
		}
		fields = fields[1:]
	}
	if len(fields) == 0 {
		return e, errors.New("missing key type and key")
	}
	keyType := fields[0]
	switch {
	case strings.HasSuffix(keyType, "-cert-v01@openssh.com"):
		return e, fmt.Errorf("key type %q is a certificate; list plain public keys", keyType)
	case !sshKeyTypes[keyType]:
		return e, fmt.Errorf("unknown key type %q", keyType)
	case len(fields) < 2:
		return e, fmt.Errorf("missing key after %q", keyType)
	}
	b64 := strings.Fields(fields[1])[0] // the rest is the comment
	raw, err := base64.StdEncoding.DecodeString(b64)
	if err != nil {
		return e, fmt.Errorf("%s key is not valid base64: %w", keyType, err)
	}
	pub, err := ssh.ParsePublicKey(raw)
	if err != nil {
		return e, fmt.Errorf("parse %s key: %w", keyType, err)
	}
	if pub.Type() != keyType {
		return e, fmt.Errorf("key type %q does not match the key, which is %q", keyType, pub.Type())
	}
	e.key = pub.Marshal()
	return e, nil
}

// allowedSignerOptions are the options ssh-keygen knows in allowed_signers.
var allowedSignerOptions = []string{"cert-authority", "namespaces", "valid-after", "valid-before"}

// looksLikeOptions tells an options field from a misspelt key type, so
// the error is about the right one.
func looksLikeOptions(field string) bool {
	if strings.Contains(field, "=") {
		return true
	}
	name, _, _ := strings.Cut(field, ",")
	for _, o := range allowedSignerOptions {
		if strings.EqualFold(name, o) {
			return true
		}
	}
	return false
}

// parseOptions parses a comma-separated options field into e.
func (e *allowedSigner) parseOptions(field string) error {
	opts, err := splitOutsideQuotes(field, ',')
	if err != nil {
		return err
	}
	for _, opt := range opts {
		name, value, hasValue := strings.Cut(opt, "=")
		value = unquoteOption(value)
		switch strings.ToLower(name) {
		case "cert-authority":
			return errors.New("cert-authority is not supported: list the keys that sign commits")
		case "namespaces":
			if !hasValue || value == "" {
				return errors.New("namespaces needs a value, such as namespaces=\"git\"")
			}
			e.namespacesOpt = value
			e.namespaces = strings.Split(value, ",")
		case "valid-after":
			t, err := parseSSHTime(value)
			if err != nil {
				return fmt.Errorf("valid-after: %w", err)
			}
			e.validAfter, e.validAfterOpt = t, value
		case "valid-before":
			t, err := parseSSHTime(value)
			if err != nil {
				return fmt.Errorf("valid-before: %w", err)
			}
			e.validBefore, e.validBeforeOpt = t, value
		default:
			return fmt.Errorf("unknown option %q", name)
		}
	}
	return nil
}

// parseSSHTime parses YYYYMMDD[HHMM[SS]] in local time, or in UTC with a
// trailing "Z", as ssh-keygen does for valid-after and valid-before.
func parseSSHTime(s string) (time.Time, error) {
	loc := time.Local
	digits := s
	if d, ok := strings.CutSuffix(s, "Z"); ok {
		digits, loc = d, time.UTC
	} else if d, ok := strings.CutSuffix(s, "z"); ok {
		digits, loc = d, time.UTC
	}
	var layout string
	switch len(digits) {
	case 8:
		layout = "20060102"
	case 12:
		layout = "200601021504"
	case 14:
		layout = "20060102150405"
	default:
		return time.Time{}, fmt.Errorf("%q is not YYYYMMDD[HHMM[SS]][Z]", s)
	}
	t, err := time.ParseInLocation(layout, digits, loc)
	if err != nil {
		return time.Time{}, fmt.Errorf("%q is not YYYYMMDD[HHMM[SS]][Z]", s)
	}
	return t, nil
}

// splitSignerFields splits line at unquoted blanks into at most n fields, the
// last holding the rest of the line.
func splitSignerFields(line string, n int) ([]string, error) {
	var fields []string
	for line != "" && len(fields) < n-1 {
		end, quoted := 0, false
		for ; end < len(line); end++ {
			if line[end] == '"' {
				quoted = !quoted
			} else if !quoted && (line[end] == ' ' || line[end] == '\t') {
				break
			}
		}
		if quoted {
			return nil, fmt.Errorf("unterminated quote in %q", line)
		}
		fields = append(fields, line[:end])
		line = strings.TrimLeft(line[end:], " \t")
	}
	if line != "" {
		fields = append(fields, line)
	}
	return fields, nil
}

// splitOutsideQuotes splits s at sep where sep is not inside quotes.
func splitOutsideQuotes(s string, sep byte) ([]string, error) {
	var parts []string
	start, quoted := 0, false
	for i := 0; i < len(s); i++ {
		switch {
		case s[i] == '"':
			quoted = !quoted
		case s[i] == sep && !quoted:
			parts = append(parts, s[start:i])
			start = i + 1
		}
	}
	if quoted {
		return nil, fmt.Errorf("unterminated quote in %q", s)
	}
	return append(parts, s[start:]), nil
}

// unquoteOption strips one pair of surrounding double quotes.
func unquoteOption(s string) string {
	if len(s) >= 2 && s[0] == '"' && s[len(s)-1] == '"' {
		return s[1 : len(s)-1]
	}
	return s
}

// matchPatternList reports whether s matches a list of OpenSSH patterns
// ('*' and '?' wildcards): some pattern must match and no negated one
// ("!pattern") may.
func matchPatternList(s string, patterns []string) bool {
	matched := false
	for _, p := range patterns {
		if neg, ok := strings.CutPrefix(p, "!"); ok {
			if matchPattern(s, neg) {
				return false
			}
		} else if matchPattern(s, p) {
			matched = true
		}
	}
	return matched
}

// matchPattern matches s against one pattern with '*' and '?', in time
// linear in their lengths' product (no exponential backtracking).
func matchPattern(s, p string) bool {
	si, pi := 0, 0
	star, mark := -1, 0
	for si < len(s) {
		switch {
		case pi < len(p) && (p[pi] == '?' || p[pi] == s[si]):
			si++
			pi++
		case pi < len(p) && p[pi] == '*':
			star, mark = pi, si
			pi++
		case star >= 0:
			pi = star + 1
			mark++
			si = mark
		default:
			return false
		}
	}
	for pi < len(p) && p[pi] == '*' {
		pi++
	}
	return pi == len(p)
}
