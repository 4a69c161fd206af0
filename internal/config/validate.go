package config

import (
	"fmt"
	"net"
	"net/url"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"time"

	units "github.com/docker/go-units"
)

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
	if c.Source.Timeout < time.Second {
		return bad("source.timeout", "must be at least 1s")
	}
	if c.Source.Auth.SSHKey != "" && c.Source.Auth.KnownHosts == "" {
		return bad("source.auth.known_hosts", "required with source.auth.ssh_key")
	}
	for _, f := range []struct{ key, path string }{
		{"source.auth.ssh_key", c.Source.Auth.SSHKey},
		{"source.auth.known_hosts", c.Source.Auth.KnownHosts},
		{"source.auth.token_file", c.Source.Auth.TokenFile},
		{"source.verify.allowed_signers", c.Source.Verify.AllowedSigners},
		{"source.verify.keyring", c.Source.Verify.Keyring},
		{"backup.identity_file", c.Backup.IdentityFile},
		{"secrets.age_key_file", c.Secrets.AgeKeyFile},
		{"images.docker_config", c.Images.DockerConfig},
	} {
		if f.path != "" && !filepath.IsAbs(f.path) {
			return bad(f.key, "must be an absolute path")
		}
	}
	if c.Source.Verify.AllowRewrite && !c.Source.Verify.Enabled() {
		return bad("source.verify.allow_rewrite", "needs source.verify.allowed_signers or source.verify.keyring: without them no head is checked")
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
	if n, err := units.RAMInBytes(c.Images.MaxBuildContext); err != nil || n <= 0 {
		return bad("images.max_build_context", fmt.Sprintf("%q is not a size such as 512MiB or 1g", c.Images.MaxBuildContext))
	}
	if c.Images.PruneAfter < 0 {
		return bad("images.prune_after", "must not be negative (0 never prunes)")
	}
	if c.Sync.Parallel < 0 {
		return bad("sync.parallel", "must not be negative (0 takes the default)")
	}
	if c.Drift.CheckInterval < time.Second {
		return bad("drift.check_interval", "must be at least 1s")
	}
	if w := c.Notify.Webhook; w != "" && !strings.HasPrefix(w, "http://") && !strings.HasPrefix(w, "https://") {
		return bad("notify.webhook", fmt.Sprintf("%q is not an http(s) URL", w))
	}
	if err := c.Report.validate(); err != nil {
		return err
	}
	if u := c.Fleet.Prometheus; u != "" && !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
		return bad("fleet.prometheus", fmt.Sprintf("%q is not an http(s) URL", u))
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
	if err := c.Backup.Remote.validate(); err != nil {
		return err
	}
	return c.Policy.validate()
}

func (r Report) validate() error {
	bad := func(key, msg string) error { return &Error{Key: key, Msg: msg} }
	switch r.Provider {
	case "":
		if r.URL != "" || r.TokenFile != "" {
			return bad("report.provider", "required with report.url or report.token_file: github, gitlab or gitea")
		}
		return nil
	case ReportGitHub, ReportGitLab, ReportGitea:
	default:
		return bad("report.provider", fmt.Sprintf("%q is not a provider: github, gitlab or gitea (Forgejo: gitea)", r.Provider))
	}
	if u := r.URL; u != "" && !strings.HasPrefix(u, "http://") && !strings.HasPrefix(u, "https://") {
		return bad("report.url", fmt.Sprintf("%q is not an http(s) URL", u))
	}
	switch {
	case r.TokenFile == "":
		return bad("report.token_file", "required with report.provider")
	case !filepath.IsAbs(r.TokenFile):
		return bad("report.token_file", "must be an absolute path")
	}
	return nil
}

func (p Policy) validate() error {
	if p.Preset != PresetDefault && p.Preset != PresetStrict {
		return &Error{Key: "policy.preset", Msg: fmt.Sprintf("%q is not a preset: leave it out (allow everything) or use strict", p.Preset)}
	}
	for i, dir := range p.BindPaths {
		if !filepath.IsAbs(dir) || filepath.Clean(dir) != dir {
			return &Error{Key: fmt.Sprintf("policy.bind_paths[%d]", i), Msg: fmt.Sprintf("%q must be a clean absolute path", dir)}
		}
	}
	for i, c := range p.Capabilities {
		if !capabilityRE.MatchString(c) {
			return &Error{Key: fmt.Sprintf("policy.capabilities[%d]", i), Msg: fmt.Sprintf("%q is not a capability such as NET_ADMIN (or ALL)", c)}
		}
	}
	for i, o := range p.SecurityOptions {
		if !securityOptRE.MatchString(o) {
			return &Error{Key: fmt.Sprintf("policy.security_options[%d]", i), Msg: fmt.Sprintf("%q is not a security_opt such as apparmor=my-profile or seccomp=* (or ALL)", o)}
		}
	}
	for i, d := range p.VolumeDrivers {
		if !volumeDriverRE.MatchString(d) {
			return &Error{Key: fmt.Sprintf("policy.volume_drivers[%d]", i), Msg: fmt.Sprintf("%q is not a volume driver name such as rexray/ebs (or ALL)", d)}
		}
	}
	return nil
}

var (
	// hostNameRE is a DNS-like name: what `hostname` prints, lower-cased;
	// '_' is tolerated as many fleets use it.
	hostNameRE = regexp.MustCompile(`^[a-z0-9]([a-z0-9._-]{0,251}[a-z0-9])?$`)
	labelKeyRE = regexp.MustCompile(`^[A-Za-z0-9_.-]+$`)
	// capabilityRE: compose and docker accept either spelling.
	capabilityRE = regexp.MustCompile(`^(CAP_)?[A-Z][A-Z0-9_]*$`)
	// securityOptRE: a key of Docker's (seccomp, apparmor, label, ...),
	// then its value after "=" or ":"; a trailing * matches any rest.
	securityOptRE = regexp.MustCompile(`^(ALL|[a-z][a-z-]*([=:].+)?)$`)
	// volumeDriverRE: a plugin's name as `docker plugin ls` shows it.
	volumeDriverRE = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._/:@-]*$`)
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
