package config

import (
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"
)

// DefaultPath is where the daemon looks without --config or GITOPSD_CONFIG.
const DefaultPath = "/etc/gitopsd/gitopsd.yaml"

// Defaults other than the host name, which is the machine's.
const (
	DefaultBranch   = "main"
	DefaultInterval = time.Minute
	DefaultStateDir = "/var/lib/gitopsd"
	DefaultSocket   = "/run/gitopsd/gitopsd.sock"
	DefaultMetrics  = "127.0.0.1:9469"
)

// MinInterval is the shortest poll period: a fleet polling faster would load
// the Git server more than it gains; local repositories are watched anyway.
const MinInterval = 5 * time.Second

// Config is the daemon's configuration (DESIGN.md, "The daemon's own configuration").
type Config struct {
	Source   Source  `yaml:"source"`
	Host     Host    `yaml:"host"`
	StateDir string  `yaml:"state_dir"`
	Socket   string  `yaml:"socket"`
	Metrics  string  `yaml:"metrics"`
	Webhook  Webhook `yaml:"webhook"`
}

type Source struct {
	URL      string        `yaml:"url"`
	Branch   string        `yaml:"branch"`
	Interval time.Duration `yaml:"interval"` // a Go duration in the file: 30s, 1m, 1h30m
	Auth     Auth          `yaml:"auth"`
	Verify   Verify        `yaml:"verify"`
}

type Auth struct {
	SSHKey     string `yaml:"ssh_key"`
	KnownHosts string `yaml:"known_hosts"`
	TokenFile  string `yaml:"token_file"`
}

type Verify struct {
	AllowedSigners string `yaml:"allowed_signers"`
}

type Host struct {
	Name   string            `yaml:"name"`
	Labels map[string]string `yaml:"labels"`
}

type Webhook struct {
	Listen     string `yaml:"listen"`
	SecretFile string `yaml:"secret_file"`
}

// Error is a bad configuration, reported on one line naming the key:
//
//	config /etc/gitopsd/gitopsd.yaml: line 4: unknown key source.urll
//	config /etc/gitopsd/gitopsd.yaml: line 3: source.interval: must be at least 5s
//	config: source.url: required (from GITOPSD_SOURCE_URL)
type Error struct {
	File string // the config file; "" when the value did not come from one
	Line int    // line in File; 0 when unknown
	Key  string // dotted key path, e.g. source.interval or host.labels.site
	Msg  string // what is wrong with it
	Env  string // the environment variable the bad value came from, if any
	Hint string // optional context, appended in parentheses
}

// msgUnknownKey marks an Error for a key that does not exist.
const msgUnknownKey = "unknown key"

func (e *Error) Error() string {
	var b strings.Builder
	b.WriteString("config")
	if e.File != "" {
		b.WriteString(" " + e.File)
	}
	b.WriteString(": ")
	if e.Line > 0 {
		fmt.Fprintf(&b, "line %d: ", e.Line)
	}
	switch {
	case e.Msg == msgUnknownKey:
		b.WriteString(msgUnknownKey + " " + e.Key)
	case e.Key != "":
		b.WriteString(e.Key + ": " + e.Msg)
	default:
		b.WriteString(e.Msg)
	}
	if e.Env != "" {
		b.WriteString(" (from " + e.Env + ")")
	}
	if e.Hint != "" {
		b.WriteString(" (" + e.Hint + ")")
	}
	return b.String()
}

// Load reads the file at path (which must exist), applies defaults and
// environment overrides, and validates. Errors name the key.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, readError(path, err)
	}
	return load(path, data)
}

// LoadOrDefault is Load, except that a missing file is not an error when the
// path was not given explicitly (no --config, no GITOPSD_CONFIG): then the
// defaults and the GITOPSD_* variables make the whole configuration, which is
// how `gitopsd run` is configured from the environment alone.
func LoadOrDefault(path string, explicit bool) (*Config, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) && !explicit {
		c, err := load("", nil)
		var e *Error
		if errors.As(err, &e) {
			e.Hint = path + " does not exist: defaults and GITOPSD_* variables apply"
		}
		return c, err
	}
	if err != nil {
		return nil, readError(path, err)
	}
	return load(path, data)
}

// readError drops the path the os error repeats.
func readError(path string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		err = pe.Err
	}
	return fmt.Errorf("config %s: %w", path, err)
}

// load is the common path of Load and LoadOrDefault; data is the file's
// content, path "" when there is no file.
func load(path string, data []byte) (*Config, error) {
	c := Default()
	lines, err := decodeYAML(data, c)
	if err != nil {
		return nil, withFile(err, path)
	}
	fromEnv, err := c.applyEnv(os.LookupEnv)
	if err != nil {
		return nil, err
	}
	wd, err := os.Getwd()
	if err != nil {
		return nil, fmt.Errorf("config: resolve relative paths: %w", err)
	}
	c.resolvePaths(wd)
	c.Host.Name = strings.ToLower(c.Host.Name)
	if err := c.Validate(); err != nil {
		var e *Error
		if errors.As(err, &e) {
			if env, ok := fromEnv[e.Key]; ok {
				e.Env = env
			} else if path != "" {
				e.File, e.Line = path, lineOf(lines, e.Key)
			}
		}
		return nil, err
	}
	return c, nil
}

func withFile(err error, path string) error {
	var e *Error
	if errors.As(err, &e) {
		e.File = path
	}
	return err
}

// lineOf is the line of key in the file, or of its nearest enclosing key
// when it is missing there (a required key points at its section).
func lineOf(lines map[string]int, key string) int {
	for key != "" {
		if l, ok := lines[key]; ok {
			return l
		}
		i := strings.LastIndexByte(key, '.')
		if i < 0 {
			break
		}
		key = key[:i]
	}
	return 0
}

// Default is the configuration with every default applied and no source.
// host.name is the machine's hostname, lower-cased ("" if it is unknown).
func Default() *Config {
	name, _ := os.Hostname()
	return &Config{
		Source:   Source{Branch: DefaultBranch, Interval: DefaultInterval},
		Host:     Host{Name: strings.ToLower(name)},
		StateDir: DefaultStateDir,
		Socket:   DefaultSocket,
		Metrics:  DefaultMetrics,
	}
}

// Env is one environment override: the variable and the key it sets.
type Env struct {
	Var string
	Key string
}

// EnvOverrides are the variables Load applies over the file, in order. A
// variable that is set overrides the key even when empty (GITOPSD_METRICS=
// disables metrics, as `metrics: ""` does).
var EnvOverrides = []Env{
	{"GITOPSD_SOURCE_URL", "source.url"},
	{"GITOPSD_SOURCE_BRANCH", "source.branch"},
	{"GITOPSD_SOURCE_INTERVAL", "source.interval"},
	{"GITOPSD_HOST_NAME", "host.name"},
	{"GITOPSD_STATE_DIR", "state_dir"},
	{"GITOPSD_SOCKET", "socket"},
	{"GITOPSD_METRICS", "metrics"},
}

// applyEnv sets the keys of EnvOverrides from lookup and returns which keys
// it set, by variable.
func (c *Config) applyEnv(lookup func(string) (string, bool)) (map[string]string, error) {
	set := map[string]string{}
	for _, e := range EnvOverrides {
		v, ok := lookup(e.Var)
		if !ok {
			continue
		}
		set[e.Key] = e.Var
		switch e.Key {
		case "source.url":
			c.Source.URL = v
		case "source.branch":
			c.Source.Branch = v
		case "source.interval":
			d, err := time.ParseDuration(v)
			if err != nil {
				return nil, &Error{Key: e.Key, Env: e.Var, Msg: fmt.Sprintf("%q is not a duration such as 30s, 1m or 1h", v)}
			}
			c.Source.Interval = d
		case "host.name":
			c.Host.Name = v
		case "state_dir":
			c.StateDir = v
		case "socket":
			c.Socket = v
		case "metrics":
			c.Metrics = v
		}
	}
	return set, nil
}

// resolvePaths makes relative file paths absolute against wd, the working
// directory at load time, so that `state_dir: ./state` works from a checkout.
func (c *Config) resolvePaths(wd string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(wd, *p)
		}
	}
	abs(&c.StateDir)
	abs(&c.Socket)
	abs(&c.Source.Auth.SSHKey)
	abs(&c.Source.Auth.KnownHosts)
	abs(&c.Source.Auth.TokenFile)
	abs(&c.Source.Verify.AllowedSigners)
	abs(&c.Webhook.SecretFile)
	if sourceKind(c.Source.URL) == sourceLocal {
		abs(&c.Source.URL)
	}
}

// Validate reports the first bad key as "config: <key>: <why>".
func (c *Config) Validate() error {
	bad := func(key, msg string) error { return &Error{Key: key, Msg: msg} }

	if err := validateURL(c.Source.URL); err != "" {
		return bad("source.url", err)
	}
	if err := validateBranch(c.Source.Branch); err != "" {
		return bad("source.branch", err)
	}
	if c.Source.Interval < MinInterval {
		return bad("source.interval", "must be at least "+MinInterval.String())
	}
	if c.Source.Auth.SSHKey != "" && c.Source.Auth.KnownHosts == "" {
		return bad("source.auth.known_hosts", "required with source.auth.ssh_key")
	}
	for _, f := range []struct{ key, path string }{
		{"source.auth.ssh_key", c.Source.Auth.SSHKey},
		{"source.auth.known_hosts", c.Source.Auth.KnownHosts},
		{"source.auth.token_file", c.Source.Auth.TokenFile},
		{"source.verify.allowed_signers", c.Source.Verify.AllowedSigners},
	} {
		if f.path != "" && !filepath.IsAbs(f.path) {
			return bad(f.key, "must be an absolute path")
		}
	}
	switch {
	case c.Host.Name == "":
		return bad("host.name", "required (the hostname of this machine is unknown)")
	case !hostNameRE.MatchString(c.Host.Name):
		return bad("host.name", fmt.Sprintf("%q must be a valid hostname-like name (lowercase letters, digits, '-', '_', '.')", c.Host.Name))
	}
	keys := make([]string, 0, len(c.Host.Labels))
	for k := range c.Host.Labels {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		if !labelKeyRE.MatchString(k) {
			return bad("host.labels."+k, "not a valid label key (letters, digits, '_', '.', '-')")
		}
	}
	for _, f := range []struct{ key, path string }{{"state_dir", c.StateDir}, {"socket", c.Socket}} {
		switch {
		case f.path == "":
			return bad(f.key, "required")
		case !filepath.IsAbs(f.path):
			return bad(f.key, "must be an absolute path")
		}
	}
	if c.Metrics != "" && !isHostPort(c.Metrics) {
		return bad("metrics", fmt.Sprintf("%q is not a host:port (empty disables metrics)", c.Metrics))
	}
	if c.Webhook.Listen != "" {
		if !isHostPort(c.Webhook.Listen) {
			return bad("webhook.listen", fmt.Sprintf("%q is not a host:port", c.Webhook.Listen))
		}
		if c.Webhook.SecretFile == "" {
			return bad("webhook.secret_file", "required when webhook.listen is set")
		}
	}
	if c.Webhook.SecretFile != "" && !filepath.IsAbs(c.Webhook.SecretFile) {
		return bad("webhook.secret_file", "must be an absolute path")
	}
	return nil
}

var (
	// hostNameRE is a DNS-like name: what `hostname` prints, lower-cased;
	// '_' is tolerated as many fleets use it.
	hostNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,251}[a-z0-9])?$`)
	labelKeyRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)
)

type sourceURLKind int

const (
	sourceNone  sourceURLKind = iota
	sourceURL                 // scheme://...
	sourceSCP                 // [user@]host:path
	sourceLocal               // a path on this machine
)

// sourceKind tells the forms of source.url apart as git does: a scheme, else
// a colon before any slash is scp-like, else a local path.
func sourceKind(u string) sourceURLKind {
	switch {
	case u == "":
		return sourceNone
	case strings.Contains(u, "://"):
		return sourceURL
	}
	if i := strings.IndexByte(u, ':'); i > 0 && !strings.Contains(u[:i], "/") {
		return sourceSCP
	}
	return sourceLocal
}

// validateURL returns why u is not a usable source, or "". It never echoes
// the URL: it may carry a token.
func validateURL(u string) string {
	switch sourceKind(u) {
	case sourceNone:
		return "required"
	case sourceURL:
		p, err := url.Parse(u)
		if err != nil {
			return "not a valid URL"
		}
		switch p.Scheme {
		case "https", "http", "ssh", "git":
			if p.Host == "" {
				return "the URL has no host"
			}
		case "file":
			if p.Path == "" {
				return "the file:// URL has no path"
			}
		default:
			return fmt.Sprintf("unsupported scheme %q (https, http, ssh, git, file, scp-like user@host:path, or a local path)", p.Scheme)
		}
	case sourceSCP:
		host, _, _ := strings.Cut(u, ":")
		if _, h, ok := strings.Cut(host, "@"); (ok && h == "") || host == "" {
			return "the scp-like address has no host"
		}
	case sourceLocal:
		if !filepath.IsAbs(u) {
			return "a local repository path must be absolute"
		}
	}
	return ""
}

// validateBranch returns why b is not a branch name git accepts, or "".
// It follows git check-ref-format for refs/heads/<b>.
func validateBranch(b string) string {
	const why = "not a valid branch name"
	switch {
	case b == "":
		return "required"
	case strings.HasPrefix(b, "refs/"):
		return fmt.Sprintf("give the branch name, not a ref (%q, not %q)", strings.TrimPrefix(b, "refs/heads/"), b)
	case b == "@", strings.HasPrefix(b, "-"), strings.HasPrefix(b, "/"), strings.HasSuffix(b, "/"),
		strings.HasSuffix(b, "."), strings.HasSuffix(b, ".lock"),
		strings.Contains(b, ".."), strings.Contains(b, "//"), strings.Contains(b, "@{"), strings.Contains(b, "/."),
		strings.HasPrefix(b, "."):
		return fmt.Sprintf("%q is %s", b, why)
	}
	for _, r := range b {
		if r < 0x20 || r == 0x7f || strings.ContainsRune(" ~^:?*[\\", r) {
			return fmt.Sprintf("%q is %s", b, why)
		}
	}
	return ""
}

// isHostPort accepts "host:port", "[v6]:port" and ":port" (every interface).
func isHostPort(s string) bool {
	_, port, err := net.SplitHostPort(s)
	if err != nil {
		return false
	}
	n, err := strconv.Atoi(port)
	return err == nil && n > 0 && n <= 65535
}
