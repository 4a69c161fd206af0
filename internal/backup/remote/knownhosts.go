package remote

import (
	"bufio"
	"bytes"
	"crypto/hmac"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// pinnedHostKey returns the host key check for addr from the known_hosts
// file, and the key algorithms that file holds for addr. Offering only
// those matters: a server with an ed25519 and an RSA key would otherwise
// show the one the client prefers, and a file pinning the other would
// look like a changed key.
func pinnedHostKey(file, addr string) (ssh.HostKeyCallback, []string, error) {
	check, err := knownhosts.New(file)
	if err != nil {
		return nil, nil, fmt.Errorf("read SSH_KNOWN_HOSTS %s: %w", file, err)
	}
	algorithms, err := knownAlgorithms(file, addr)
	if err != nil {
		return nil, nil, fmt.Errorf("read SSH_KNOWN_HOSTS %s: %w", file, err)
	}
	host, port, _ := net.SplitHostPort(addr)
	callback := func(hostname string, remote net.Addr, key ssh.PublicKey) error {
		err := check(hostname, remote, key)
		var ke *knownhosts.KeyError
		switch {
		case err == nil:
			return nil
		case errors.As(err, &ke) && len(ke.Want) > 0:
			return fmt.Errorf("the host key of %s (%s %s) does not match the one pinned for it in SSH_KNOWN_HOSTS %s: refusing to connect (if the server's key changed on purpose, replace its line there)",
				addr, key.Type(), ssh.FingerprintSHA256(key), file)
		case errors.As(err, &ke):
			return fmt.Errorf("%s is not in SSH_KNOWN_HOSTS %s: refusing to connect (after checking its fingerprint %s, add it with: ssh-keyscan -p %s %s >> %s)",
				addr, file, ssh.FingerprintSHA256(key), port, host, file)
		default:
			return fmt.Errorf("check the host key of %s against SSH_KNOWN_HOSTS %s: %w", addr, file, err)
		}
	}
	return callback, algorithms, nil
}

// knownAlgorithms lists the key types the known_hosts file holds for addr
// (plain or hashed entries; @revoked and @cert-authority lines aside), as
// host key algorithm names. None found: nil, the client's defaults, and
// the check then refuses the host with a clear message.
func knownAlgorithms(file, addr string) ([]string, error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, err
	}
	want := knownhosts.Normalize(addr)
	seen := map[string]bool{}
	var algorithms []string
	add := func(a string) {
		if !seen[a] {
			seen[a] = true
			algorithms = append(algorithms, a)
		}
	}
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	for sc.Scan() {
		line := bytes.TrimSpace(sc.Bytes())
		if len(line) == 0 || line[0] == '#' {
			continue
		}
		marker, hosts, key, _, _, err := ssh.ParseKnownHosts(line)
		if err != nil || marker != "" {
			continue // knownhosts.New reported what it could not read
		}
		for _, h := range hosts {
			if hostMatches(h, want) {
				if key.Type() == ssh.KeyAlgoRSA {
					add(ssh.KeyAlgoRSASHA512)
					add(ssh.KeyAlgoRSASHA256)
				}
				add(key.Type())
			}
		}
	}
	return algorithms, sc.Err()
}

// hostMatches compares one host field of a known_hosts line with a
// normalised address, hashed (|1|salt|hmac) or plain; patterns with
// wildcards are left to knownhosts.
func hostMatches(pattern, want string) bool {
	if rest, ok := strings.CutPrefix(pattern, "|1|"); ok {
		salt64, hash64, ok := strings.Cut(rest, "|")
		if !ok {
			return false
		}
		salt, err1 := base64.StdEncoding.DecodeString(salt64)
		hash, err2 := base64.StdEncoding.DecodeString(hash64)
		if err1 != nil || err2 != nil {
			return false
		}
		mac := hmac.New(sha1.New, salt)
		mac.Write([]byte(want))
		return hmac.Equal(mac.Sum(nil), hash)
	}
	return pattern == want
}
