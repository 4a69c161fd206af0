package notify

import (
	"context"
	"fmt"
	"io"
	"log"
	"net/url"
	"sort"
	"strings"

	"github.com/nicholas-fedor/shoutrrr/pkg/services/chat/discord"
	"github.com/nicholas-fedor/shoutrrr/pkg/services/chat/googlechat"
	"github.com/nicholas-fedor/shoutrrr/pkg/services/chat/lark"
	"github.com/nicholas-fedor/shoutrrr/pkg/services/chat/matrix"
	"github.com/nicholas-fedor/shoutrrr/pkg/services/chat/mattermost"
	"github.com/nicholas-fedor/shoutrrr/pkg/services/chat/rocketchat"
	"github.com/nicholas-fedor/shoutrrr/pkg/services/chat/signal"
	"github.com/nicholas-fedor/shoutrrr/pkg/services/chat/slack"
	"github.com/nicholas-fedor/shoutrrr/pkg/services/chat/teams"
	"github.com/nicholas-fedor/shoutrrr/pkg/services/chat/telegram"
	"github.com/nicholas-fedor/shoutrrr/pkg/services/chat/wecom"
	"github.com/nicholas-fedor/shoutrrr/pkg/services/chat/zulip"
	"github.com/nicholas-fedor/shoutrrr/pkg/services/incident/opsgenie"
	"github.com/nicholas-fedor/shoutrrr/pkg/services/incident/pagerduty"
	"github.com/nicholas-fedor/shoutrrr/pkg/services/push/bark"
	"github.com/nicholas-fedor/shoutrrr/pkg/services/push/gotify"
	"github.com/nicholas-fedor/shoutrrr/pkg/services/push/ifttt"
	"github.com/nicholas-fedor/shoutrrr/pkg/services/push/join"
	"github.com/nicholas-fedor/shoutrrr/pkg/services/push/ntfy"
	"github.com/nicholas-fedor/shoutrrr/pkg/services/push/pushbullet"
	"github.com/nicholas-fedor/shoutrrr/pkg/services/push/pushover"
	"github.com/nicholas-fedor/shoutrrr/pkg/services/specialized/notifiarr"
	"github.com/nicholas-fedor/shoutrrr/pkg/types"
)

// Why not shoutrrr's router: it links every service, and its smtp, generic
// and logger services execute text/template, whose method lookup by name
// makes the Go linker keep every exported method of every type in the
// binary (6.6 MB). So the template-free services are used through their own
// packages, and smtp and generic are ours (smtp.go, generic.go).

// sender delivers a line of text to one service.
type sender interface {
	Send(ctx context.Context, msg string) error
}

// service is the part of a shoutrrr service gitopsd calls. Not
// types.Service: its template methods are what must stay unreachable.
type service interface {
	Initialize(serviceURL *url.URL, logger types.StdLogger) error
	Send(message string, params *types.Params) error
}

// customURL is a shoutrrr service that also takes scheme+https://... URLs
// (teams, notifiarr).
type customURL interface {
	GetConfigURLFromCustom(customURL *url.URL) (*url.URL, error)
}

// services are shoutrrr's service packages that run no template, by scheme.
var services = map[string]func() service{
	"bark":       func() service { return &bark.Service{} },
	"discord":    func() service { return &discord.Service{} },
	"googlechat": func() service { return &googlechat.Service{} },
	"hangouts":   func() service { return &googlechat.Service{} },
	"gotify":     func() service { return &gotify.Service{} },
	"ifttt":      func() service { return &ifttt.Service{} },
	"join":       func() service { return &join.Service{} },
	"lark":       func() service { return &lark.Service{} },
	"matrix":     func() service { return &matrix.Service{} },
	"mattermost": func() service { return &mattermost.Service{} },
	"notifiarr":  func() service { return &notifiarr.Service{} },
	"ntfy":       func() service { return &ntfy.Service{} },
	"opsgenie":   func() service { return &opsgenie.Service{} },
	"pagerduty":  func() service { return &pagerduty.Service{} },
	"pushbullet": func() service { return &pushbullet.Service{} },
	"pushover":   func() service { return &pushover.Service{} },
	"rocketchat": func() service { return &rocketchat.Service{} },
	"signal":     func() service { return &signal.Service{} },
	"slack":      func() service { return &slack.Service{} },
	"teams":      func() service { return &teams.Service{} },
	"telegram":   func() service { return &telegram.Service{} },
	"wecom":      func() service { return &wecom.Service{} },
	"zulip":      func() service { return &zulip.Service{} },
}

// Schemes lists the URL schemes notify.urls takes (generic also as
// generic+http and generic+https).
func Schemes() []string {
	s := []string{"generic", "smtp"}
	for k := range services {
		s = append(s, k)
	}
	sort.Strings(s)
	return s
}

// quiet is the logger shoutrrr's services get: what they log, their error
// says too, and their log lines would quote tokens.
var quiet = log.New(io.Discard, "", 0)

// parse makes the sender for one shoutrrr URL.
func parse(raw string) (sender, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	scheme, _, custom := strings.Cut(u.Scheme, "+")
	switch scheme {
	case "generic":
		return parseGeneric(u)
	case "smtp":
		if custom {
			return nil, fmt.Errorf("smtp takes no +%s", strings.TrimPrefix(u.Scheme, "smtp+"))
		}
		return parseSMTP(u)
	}
	newService, ok := services[scheme]
	if !ok {
		return nil, fmt.Errorf("unknown service %q (gitopsd sends to %s)", scheme, strings.Join(Schemes(), ", "))
	}
	s := newService()
	if custom {
		c, ok := s.(customURL)
		if !ok {
			return nil, fmt.Errorf("%s takes no custom %s URL", scheme, u.Scheme)
		}
		if u, err = c.GetConfigURLFromCustom(u); err != nil {
			return nil, err
		}
	}
	if err := s.Initialize(u, quiet); err != nil {
		return nil, err
	}
	return shoutrrrSender{s}, nil
}

type shoutrrrSender struct{ s service }

// Send ignores ctx: shoutrrr's services take none. The queue in front of
// all senders is what keeps a slow one from holding up the reconcile loop.
func (s shoutrrrSender) Send(_ context.Context, msg string) error {
	return s.s.Send(msg, nil)
}
