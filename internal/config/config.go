package config

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	units "github.com/docker/go-units"
)

// DefaultPath is where the daemon looks without --config or GITOPSD_CONFIG.
const DefaultPath = "/etc/gitopsd/gitopsd.yaml"

// Defaults other than the host name, which is the machine's.
const (
	DefaultBranch   = "main"
	DefaultInterval = time.Minute
	DefaultTimeout  = time.Minute // source.timeout
	DefaultStateDir = "/var/lib/gitopsd"
	DefaultSocket   = "/run/gitopsd/gitopsd.sock"
	DefaultMetrics  = "127.0.0.1:9469"
)

// MinInterval is the shortest poll period: a fleet polling faster would load
// the Git server more than it gains; local repositories are watched anyway.
const MinInterval = 5 * time.Second

// Config is the daemon's configuration (docs/configuration.md).
type Config struct {
	Source   Source  `yaml:"source"`
	Host     Host    `yaml:"host"`
	StateDir string  `yaml:"state_dir"`
	Socket   string  `yaml:"socket"`
	Metrics  string  `yaml:"metrics"`
	Webhook  Webhook `yaml:"webhook"`
	Drift    Drift   `yaml:"drift"`
	Sync     Sync    `yaml:"sync"`
	Backup   Backup  `yaml:"backup"`
	Notify   Notify  `yaml:"notify"`
	Secrets  Secrets `yaml:"secrets"`
	Policy   Policy  `yaml:"policy"`
	Images   Images  `yaml:"images"`
	Report   Report  `yaml:"report"`
	Fleet    Fleet   `yaml:"fleet"`
}

// Fleet is what `gitopsd fleet status|rollout` read on this host: the
// daemon does not use it, the commands do, so an operator's host needs no
// flag.
type Fleet struct {
	// Prometheus is the URL of the Prometheus that scrapes the fleet's
	// gitopsd (http://prometheus:9090); --prometheus overrides it.
	Prometheus string `yaml:"prometheus"`
}

// Report is where commit statuses go (internal/report): one per host and
// stack, context gitopsd/<host>/<stack>; the daemon sends them
// (internal/daemon/report.go).
type Report struct {
	// Provider is github, gitlab or gitea (Forgejo too); "": no statuses.
	Provider string `yaml:"provider"`
	// URL is the API's base (https://api.github.com,
	// https://gitlab.example.com/api/v4, https://gitea.example.com); "":
	// derived from source.url's host.
	URL string `yaml:"url"`
	// TokenFile holds the API token; its content never reaches a log.
	TokenFile string `yaml:"token_file"`
}

// Report providers.
const (
	ReportGitHub = "github"
	ReportGitLab = "gitlab"
	ReportGitea  = "gitea"
)

// Images is how images reach this host and when they leave it.
type Images struct {
	// DockerConfig is the config.json `docker login` writes (auths and
	// credential helpers) that pulls take registry credentials from. "":
	// $DOCKER_CONFIG/config.json, else ~/.docker/config.json, as the docker
	// CLI reads it; a missing file means anonymous pulls.
	DockerConfig string `yaml:"docker_config"`
	// MaxBuildContext bounds the files a build: sends to the engine
	// (512MiB, 1g, ...); a bigger context fails that stack's deployment.
	MaxBuildContext string `yaml:"max_build_context"`
	// PruneAfter is how long an image gitopsd built or pulled may stay
	// unused by every kept revision (applied, last healthy) before it is
	// removed. 0 (the default): never.
	PruneAfter time.Duration `yaml:"prune_after"`
}

// DefaultMaxBuildContext is images.max_build_context when unset.
const DefaultMaxBuildContext = "512MiB"

// MaxBuildContextBytes is images.max_build_context in bytes.
func (i Images) MaxBuildContextBytes() int64 {
	n, err := units.RAMInBytes(i.MaxBuildContext)
	if err != nil || i.MaxBuildContext == "" {
		n, _ = units.RAMInBytes(DefaultMaxBuildContext)
	}
	return n
}

// Secrets holds what decrypting a repository's secrets needs from the host.
type Secrets struct {
	// AgeKeyFile holds the age identities (AGE-SECRET-KEY-...) that decrypt
	// SOPS-encrypted files of the stacks. "": none, and a stack with such a
	// file is Invalid.
	AgeKeyFile string `yaml:"age_key_file"`
}

// Policy is what a stack may ask of this host. Keys left out take the
// preset's value: "" (the default) allows everything, "strict" nothing.
type Policy struct {
	Preset            string   `yaml:"preset"`
	Privileged        *bool    `yaml:"privileged"`          // privileged: true
	HostNamespaces    *bool    `yaml:"host_namespaces"`     // network_mode, pid, ipc, uts, userns: host
	Devices           *bool    `yaml:"devices"`             // devices:, device_cgroup_rules:, gpus:, reserved devices
	DockerSocket      *bool    `yaml:"docker_socket"`       // a bind of the Docker socket
	PathsOutsideStack *bool    `yaml:"paths_outside_stack"` // env_file, include, extends, build contexts, relative binds leaving stacks/<name>/, or symlinks doing so
	OtherContainers   *bool    `yaml:"other_containers"`    // network_mode, ipc, pid or volumes_from container:<name>, external_links
	Capabilities      []string `yaml:"capabilities"`        // cap_add allowed; absent: the preset's (any, or none)
	BindPaths         []string `yaml:"bind_paths"`          // host folders binds (and bind volumes) may come from; absent: the preset's (any, or none)
	SecurityOptions   []string `yaml:"security_options"`    // security_opt allowed besides no-new-privileges; absent: any if privileged is allowed, else none
	VolumeDrivers     []string `yaml:"volume_drivers"`      // volume drivers allowed besides local; absent: the preset's (any, or none)
	VolumeOptions     *bool    `yaml:"volume_options"`      // driver_opts of volumes other than a bind (judged by bind_paths)
}

// Policy presets.
const (
	PresetDefault = ""
	PresetStrict  = "strict"
)

// Notify says where gitopsd tells what went wrong: a failed deploy, a
// rollback, drift, a failed snapshot or restore test.
type Notify struct {
	// Webhook receives each event as a JSON POST ("" : none).
	Webhook string `yaml:"webhook"`
	// URLs are shoutrrr service URLs (slack://, telegram://, smtp://,
	// ntfy://, generic+https://, ...; docs/configuration.md lists the
	// schemes) that get each event as a line of text.
	URLs []string `yaml:"urls"`
}

// Backup holds what snapshots need from the host, not from the repository.
type Backup struct {
	// IdentityFile holds the age identities (AGE-SECRET-KEY-...) that
	// decrypt snapshots a stack encrypts to its recipients, for restore
	// tests and restores. The public recipients live in the repository.
	IdentityFile string `yaml:"identity_file"`
	// Remote is where snapshots are copied off the host (backup.Offsite).
	Remote BackupRemote `yaml:"remote"`
}

// Drift tunes drift detection. Events find drift within a second; the full
// comparison of every stack with what runs is the safety net for what an
// event stream can miss, and costs only reads of the engine.
type Drift struct {
	CheckInterval time.Duration `yaml:"check_interval"`
}

// DefaultDriftCheckInterval is how often every stack is compared in full.
const DefaultDriftCheckInterval = time.Minute

// Sync is how a reconcile goes about many stacks.
type Sync struct {
	// Parallel is how many stacks a reconcile converges at once (and
	// prepares images for). 0: DefaultSyncParallel.
	Parallel int `yaml:"parallel"`
}

// DefaultSyncParallel is sync.parallel when unset: two stacks per CPU, at
// most four, so a fleet's first convergence overlaps the waits of health
// gates while a small board keeps a CPU for what it serves.
func DefaultSyncParallel() int { return min(4, 2*runtime.NumCPU()) }

// Stacks is how many stacks a reconcile converges at once.
func (s Sync) Stacks() int {
	if s.Parallel > 0 {
		return s.Parallel
	}
	return DefaultSyncParallel()
}

type Source struct {
	URL      string        `yaml:"url"`
	Branch   string        `yaml:"branch"`
	Interval time.Duration `yaml:"interval"` // a Go duration in the file: 30s, 1m, 1h30m
	// Timeout bounds one fetch (clone included): a server that accepts
	// the connection and never answers fails the fetch after it.
	Timeout time.Duration `yaml:"timeout"`
	Auth    Auth          `yaml:"auth"`
	Verify  Verify        `yaml:"verify"`
}

type Auth struct {
	SSHKey     string `yaml:"ssh_key"`
	KnownHosts string `yaml:"known_hosts"`
	TokenFile  string `yaml:"token_file"`
}

// Verify says which commits are trusted: with either file set, only a head
// signed by a key it holds, and descending from the head applied before it,
// is applied.
type Verify struct {
	AllowedSigners string `yaml:"allowed_signers"` // SSH keys, in git's allowed_signers format
	Keyring        string `yaml:"keyring"`         // OpenPGP public keys, armored
	// AllowRewrite accepts a signed head that does not descend from the
	// applied one, for repositories whose history is rewritten on purpose.
	AllowRewrite bool `yaml:"allow_rewrite"`
}

// Enabled says whether commits must be signed.
func (v Verify) Enabled() bool { return v.AllowedSigners != "" || v.Keyring != "" }

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
		if i := strings.LastIndexByte(key, '['); i > 0 && strings.HasSuffix(key, "]") {
			key = key[:i] // a list item's line is its list's
			continue
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
		Source:   Source{Branch: DefaultBranch, Interval: DefaultInterval, Timeout: DefaultTimeout},
		Host:     Host{Name: strings.ToLower(name)},
		StateDir: DefaultStateDir,
		Socket:   DefaultSocket,
		Metrics:  DefaultMetrics,
		Drift:    Drift{CheckInterval: DefaultDriftCheckInterval},
		Images:   Images{MaxBuildContext: DefaultMaxBuildContext},
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
	abs(&c.Source.Verify.Keyring)
	abs(&c.Secrets.AgeKeyFile)
	abs(&c.Webhook.SecretFile)
	abs(&c.Backup.IdentityFile)
	abs(&c.Backup.Remote.CredentialsFile)
	abs(&c.Images.DockerConfig)
	if sourceKind(c.Source.URL) == sourceLocal {
		abs(&c.Source.URL)
	}
}
