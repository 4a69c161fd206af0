package report

import (
	"fmt"
	"net/url"
	"strings"
)

// repoRef is the repository a source URL names: owner (GitLab: the
// namespace, groups and subgroups) and name.
type repoRef struct {
	scheme, host string
	owner, name  string
}

func (r repoRef) path() string { return r.owner + "/" + r.name }

// parseRepo reads https://host/owner/repo(.git), ssh://user@host[:port]/owner/repo.git
// and the scp-like user@host:owner/repo.git.
func parseRepo(source string) (repoRef, error) {
	var host, p string
	scheme := "https"
	if u, err := url.Parse(source); err == nil && u.Scheme != "" && u.Host != "" {
		host, p = u.Hostname(), u.Path
		if u.Scheme == "http" {
			scheme = "http"
			host = u.Host
		} else if u.Scheme == "https" {
			host = u.Host
		}
	} else if at, rest, ok := strings.Cut(source, ":"); ok && !strings.Contains(at, "/") && !strings.HasPrefix(rest, "/") {
		_, h, found := strings.Cut(at, "@")
		if !found {
			h = at
		}
		host, p = h, rest
	} else {
		return repoRef{}, fmt.Errorf("%q is not a URL of a hosted repository", source)
	}
	p = strings.TrimSuffix(strings.Trim(p, "/"), ".git")
	i := strings.LastIndex(p, "/")
	if i <= 0 || i == len(p)-1 {
		return repoRef{}, fmt.Errorf("%q names no owner/repository", source)
	}
	return repoRef{scheme: scheme, host: host, owner: p[:i], name: p[i+1:]}, nil
}

func defaultBase(p Provider, r repoRef) string {
	switch {
	case p == GitHub && r.host == "github.com":
		return "https://api.github.com"
	case p == GitHub:
		return r.scheme + "://" + r.host + "/api/v3"
	case p == GitLab:
		return r.scheme + "://" + r.host + "/api/v4"
	}
	return r.scheme + "://" + r.host
}
