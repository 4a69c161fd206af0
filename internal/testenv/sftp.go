package testenv

import (
	"bufio"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/pem"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
	"golang.org/x/crypto/ssh/knownhosts"
)

// SFTPServer is Debian's OpenSSH sshd on a high port of 127.0.0.1, with
// its own config, host key and authorized_keys, serving SFTP (OpenSSH's
// internal-sftp) to the user running the tests. Files land in Root.
type SFTPServer struct {
	Host string // 127.0.0.1:<port>
	User string
	// Root is the folder the tests' remote lives in; URL points there.
	Root string
	// KeyFile is the client's private key; KnownHosts pins the server's
	// host key for Host, as `ssh-keyscan -p` would write it.
	KeyFile    string
	KnownHosts string

	t        testing.TB
	config   string
	hostKeys map[string]string // ssh-keygen type -> private key file
	hostPubs []string          // the .pub lines
	proc     *serverProcess
}

// StartSFTP runs sshd for the test and stops it (and every session it
// forked) when the test ends. Without sshd (Debian's openssh-server) the
// test skips with the command that installs it, and fails under CI=true
// (NeedTool).
func StartSFTP(t testing.TB) *SFTPServer {
	t.Helper()
	NeedTool(t, "ssh-keygen", "openssh-client")
	// sshd lives in /usr/sbin, which a user's PATH may lack.
	bin := "/usr/sbin/sshd"
	if _, err := os.Stat(bin); err != nil {
		bin = NeedTool(t, "sshd", "openssh-server")
	}
	bin, err := filepath.Abs(bin) // sshd re-executes itself by its absolute path
	if err != nil {
		t.Fatal(err)
	}
	u, err := user.Current()
	if err != nil {
		t.Fatalf("current user: %v", err)
	}
	dir := t.TempDir()
	s := &SFTPServer{
		Host: "127.0.0.1:" + strconv.Itoa(FreePort(t)), User: u.Username, Root: filepath.Join(dir, "root"),
		KeyFile: filepath.Join(dir, "client_key"), KnownHosts: filepath.Join(dir, "known_hosts"),
		t: t, config: filepath.Join(dir, "sshd_config"),
	}
	s.proc = &serverProcess{name: "sshd on " + s.Host, argv: []string{bin, "-D", "-e", "-f", s.config}, logf: filepath.Join(dir, "sshd.log")}
	if err := s.setup(dir); err != nil {
		t.Fatalf("sshd setup: %v", err)
	}
	t.Cleanup(func() {
		if err := s.proc.stop(); err != nil {
			t.Errorf("cleanup: %v", err)
		}
	})
	s.Start()
	return s
}

// setup writes the host key (ssh-keygen), the client key, authorized_keys,
// known_hosts and sshd_config.
func (s *SFTPServer) setup(dir string) error {
	if err := os.Mkdir(s.Root, 0o755); err != nil {
		return err
	}
	// Two host keys, as a stock sshd has: a client must check the one
	// its known_hosts pins, not the one it happens to prefer.
	s.hostKeys = map[string]string{}
	for _, kt := range []string{"ed25519", "rsa"} {
		key := filepath.Join(dir, "host_"+kt)
		if out, err := exec.Command("ssh-keygen", "-q", "-t", kt, "-N", "", "-C", "gitopsd-test-host", "-f", key).CombinedOutput(); err != nil {
			return fmt.Errorf("ssh-keygen: %v\n%s", err, out)
		}
		pub, err := os.ReadFile(key + ".pub")
		if err != nil {
			return err
		}
		s.hostKeys[kt] = key
		s.hostPubs = append(s.hostPubs, string(pub))
	}
	clientPub, err := WriteSSHKey(s.KeyFile)
	if err != nil {
		return err
	}
	authorized := filepath.Join(dir, "authorized_keys")
	if err := os.WriteFile(authorized, ssh.MarshalAuthorizedKey(clientPub), 0o600); err != nil {
		return err
	}
	if err := os.WriteFile(s.KnownHosts, []byte(s.knownHostsLine("ssh-ed25519", false)), 0o600); err != nil {
		return err
	}
	// sshd as root separates privileges into this folder, which Debian
	// creates only when its own service starts.
	if os.Geteuid() == 0 {
		if err := os.MkdirAll("/run/sshd", 0o755); err != nil {
			return err
		}
	}
	host, port, _ := net.SplitHostPort(s.Host)
	cfg := fmt.Sprintf(`Port %s
ListenAddress %s
HostKey %s
HostKey %s
PidFile %s
AuthorizedKeysFile %s
AllowUsers %s
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PermitRootLogin prohibit-password
Subsystem sftp internal-sftp
LogLevel ERROR
`, port, host, s.hostKeys["ed25519"], s.hostKeys["rsa"], filepath.Join(dir, "sshd.pid"), authorized, s.User)
	return os.WriteFile(s.config, []byte(cfg), 0o600)
}

// KnownHostsWith writes a known_hosts that pins only the server's host key
// of keyType ("ssh-ed25519", "ssh-rsa"), hashed as `ssh-keygen -H` leaves
// it when hashed is set, and returns its path.
func (s *SFTPServer) KnownHostsWith(t testing.TB, keyType string, hashed bool) string {
	t.Helper()
	line := s.knownHostsLine(keyType, hashed)
	if line == "" {
		t.Fatalf("the test sshd has no %s host key", keyType)
	}
	file := filepath.Join(t.TempDir(), "known_hosts")
	if err := os.WriteFile(file, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

func (s *SFTPServer) knownHostsLine(keyType string, hashed bool) string {
	host, port, _ := net.SplitHostPort(s.Host)
	name := fmt.Sprintf("[%s]:%s", host, port)
	if hashed {
		name = knownhosts.HashHostname(name)
	}
	for _, pub := range s.hostPubs {
		if fields := strings.Fields(pub); len(fields) >= 2 && fields[0] == keyType {
			return name + " " + fields[0] + " " + fields[1] + "\n"
		}
	}
	return ""
}

// WriteSSHKey writes a new ed25519 private key in OpenSSH's format to file
// and returns its public key.
func WriteSSHKey(file string) (ssh.PublicKey, error) {
	pub, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, err
	}
	block, err := ssh.MarshalPrivateKey(priv, "gitopsd-test")
	if err != nil {
		return nil, err
	}
	if err := os.WriteFile(file, pem.EncodeToMemory(block), 0o600); err != nil {
		return nil, err
	}
	return ssh.NewPublicKey(pub)
}

// URL is the remote URL of Root (an absolute path: the "//" form).
func (s *SFTPServer) URL() string {
	return "sftp://" + s.User + "@" + s.Host + "/" + s.Root
}

// CredentialsFile writes a remote credentials file for this server and
// returns its path; knownHosts "" means s.KnownHosts.
func (s *SFTPServer) CredentialsFile(t testing.TB, knownHosts string) string {
	t.Helper()
	if knownHosts == "" {
		knownHosts = s.KnownHosts
	}
	file := filepath.Join(t.TempDir(), "remote.env")
	content := "SSH_KEY_FILE=" + s.KeyFile + "\nSSH_KNOWN_HOSTS=" + knownHosts + "\n"
	if err := os.WriteFile(file, []byte(content), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// WrongKnownHosts writes a known_hosts that pins another key for Host,
// as when the server was replaced or someone is in the middle.
func (s *SFTPServer) WrongKnownHosts(t testing.TB) string {
	t.Helper()
	dir := t.TempDir()
	other, err := WriteSSHKey(filepath.Join(dir, "other_key"))
	if err != nil {
		t.Fatal(err)
	}
	host, port, _ := net.SplitHostPort(s.Host)
	file := filepath.Join(dir, "known_hosts")
	line := fmt.Sprintf("[%s]:%s %s", host, port, ssh.MarshalAuthorizedKey(other))
	if err := os.WriteFile(file, []byte(line), 0o600); err != nil {
		t.Fatal(err)
	}
	return file
}

// Start runs sshd (again, after Stop) and waits until it greets.
func (s *SFTPServer) Start() {
	s.t.Helper()
	if err := s.proc.start(func(exited <-chan struct{}) error { return waitGreeting(s.Host, "SSH-2.0-", exited) }); err != nil {
		s.t.Fatal(err)
	}
}

// Stop kills sshd and every session it forked, so that connections drop
// at once, as when the server goes away.
func (s *SFTPServer) Stop() {
	s.t.Helper()
	if err := s.proc.stop(); err != nil {
		s.t.Fatal(err)
	}
}

// Freeze stops sshd and its sessions without ending them (SIGSTOP): the
// connections stay open and nothing answers, as with a hung server.
func (s *SFTPServer) Freeze() { s.proc.signal(syscall.SIGSTOP) }

// Thaw lets a frozen sshd run on (SIGCONT).
func (s *SFTPServer) Thaw() { s.proc.signal(syscall.SIGCONT) }

// Log is sshd's own log so far, for a failing test.
func (s *SFTPServer) Log() string { return s.proc.log() }

// waitGreeting waits until addr accepts a connection and sends a line
// starting with prefix.
func waitGreeting(addr, prefix string, exited <-chan struct{}) error {
	deadline := time.Now().Add(30 * time.Second)
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		err := greets(addr, prefix)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-exited:
			return errors.New("the server exited")
		case <-tick.C:
		}
	}
}

func greets(addr, prefix string) error {
	c, err := net.DialTimeout("tcp", addr, time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(5 * time.Second))
	line, err := bufio.NewReader(c).ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, prefix) {
		return fmt.Errorf("greeting %q, want %s…", line, prefix)
	}
	return nil
}
