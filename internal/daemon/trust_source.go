package daemon

import (
	"context"

	"github.com/gitopsd/gitopsd/internal/source"
	"github.com/gitopsd/gitopsd/internal/store"
)

// checkDescends refuses a signed head that does not descend from the head
// applied before it (see source.CheckDescends), unless the configuration
// allows rewritten history. prev is the source state the last fetch
// recorded: its head is the last trusted one, and it lives in the store, so
// a restart does not forget it and a replay after a reboot is refused too.
func (d *Daemon) checkDescends(ctx context.Context, head string, prev store.SourceState) error {
	if d.cfg.Source.Verify.AllowRewrite || prev.Head == "" {
		return nil
	}
	if prev.URL != source.Redact(d.cfg.Source.URL) || prev.Branch != d.cfg.Source.Branch {
		// The operator pointed gitopsd at another repository or branch,
		// whose history owes nothing to the old one's.
		return nil
	}
	return d.source.CheckDescends(ctx, head, prev.Head)
}
