package source

import (
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/go-git/go-git/v5/plumbing/transport"
	githttp "github.com/go-git/go-git/v5/plumbing/transport/http"
	gitssh "github.com/go-git/go-git/v5/plumbing/transport/ssh"
)

// auth builds the credentials for this fetch. The files are read every time
// so a rotated token or key applies without a restart. The token is returned
// so errors can be scrubbed of it.
func (s *Source) auth() (transport.AuthMethod, string, error) {
	a := s.opts.Auth
	switch s.ep.Protocol {
	case "http", "https":
		if a.TokenFile == "" {
			// go-git falls back to user:password from the URL by itself.
			return nil, "", nil
		}
		b, err := os.ReadFile(a.TokenFile)
		if err != nil {
			return nil, "", fmt.Errorf("read source.auth.token_file: %w", err)
		}
		token := strings.TrimSpace(string(b))
		if token == "" {
			return nil, "", fmt.Errorf("source.auth.token_file %s is empty", a.TokenFile)
		}
		return &githttp.BasicAuth{Username: tokenUsername, Password: token}, token, nil
	case "ssh":
		return s.sshAuth()
	}
	return nil, "", nil
}

func (s *Source) sshAuth() (transport.AuthMethod, string, error) {
	a := s.opts.Auth
	if _, err := os.Stat(a.KnownHosts); err != nil {
		// Checked here because go-git's own message for a missing file
		// talks about SSH_KNOWN_HOSTS, which gitopsd does not use.
		return nil, "", fmt.Errorf("read source.auth.known_hosts: %w", err)
	}
	// go-git's HostKeyDB (skeema/knownhosts over x/crypto's knownhosts) also
	// tells the server which host key types are on file; with a bare
	// callback the server may offer a type that is not, and a host that is
	// known fails as "key mismatch".
	db, err := gitssh.NewKnownHostsDb(a.KnownHosts)
	if err != nil {
		return nil, "", fmt.Errorf("read source.auth.known_hosts %s: %w", a.KnownHosts, err)
	}
	port := s.ep.Port
	if port == 0 {
		port = 22
	}
	helper := gitssh.HostKeyCallbackHelper{
		HostKeyCallback:   db.HostKeyCallback(),
		HostKeyAlgorithms: db.HostKeyAlgorithms(strings.Trim(s.ep.Host, "[]") + ":" + strconv.Itoa(port)),
	}
	user := s.ep.User
	if user == "" {
		user = defaultSSHUser
	}
	if a.SSHKey == "" {
		agent, err := gitssh.NewSSHAgentAuth(user)
		if err != nil {
			return nil, "", fmt.Errorf("no source.auth.ssh_key and no usable ssh-agent: %w", err)
		}
		agent.HostKeyCallbackHelper = helper
		return agent, "", nil
	}
	keys, err := gitssh.NewPublicKeysFromFile(user, a.SSHKey, "")
	if err != nil {
		return nil, "", fmt.Errorf("read source.auth.ssh_key %s: %w", a.SSHKey, err)
	}
	keys.HostKeyCallbackHelper = helper
	return keys, "", nil
}
