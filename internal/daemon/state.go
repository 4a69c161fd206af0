package daemon

import (
	"context"
	"fmt"
	"path/filepath"
	"sort"
	"strings"

	"github.com/moby/moby/client"

	"github.com/gitopsd/gitopsd/internal/engine"
	"github.com/gitopsd/gitopsd/internal/store"
	"github.com/gitopsd/gitopsd/internal/sync"
)

// The record can be lost while the stacks run: a deleted gitopsd.db-wal
// (before checkpoints, the whole record lived there), a zeroed or replaced
// gitopsd.db. A daemon that went on would take the empty record for the
// truth: a stack pinned by an operator's rollback follows the branch again,
// a revision held after a failed gate is retried. So a start that finds the
// record empty while containers this gitopsd created exist holds: it
// touches no stack, says so loudly (log, status), and waits for the
// operator: `gitopsd state adopt`, or a restored record and a restart.

// lostRecord says why the daemon must hold at start ("" when it need not):
// the record is empty and containers of this gitopsd exist. A container is
// this gitopsd's when it carries gitopsd's stack label and its compose
// working_dir lies under this state_dir (stacks are loaded from the live
// view there), so stacks of another gitopsd on the same engine, or of
// docker compose, never count.
func lostRecord(ctx context.Context, st *store.Store, cli *client.Client, stateDir string) (string, error) {
	empty, err := st.Empty(ctx)
	if err != nil || !empty {
		return "", err
	}
	stacks, err := ownStacks(ctx, cli, stateDir)
	if err != nil || len(stacks) == 0 {
		return "", err
	}
	names := make([]string, 0, len(stacks))
	for name := range stacks {
		names = append(names, name)
	}
	sort.Strings(names)
	return fmt.Sprintf("the record %s is empty, yet stacks this gitopsd deployed run (%s): it was lost (a deleted -wal file, a reset database). "+
		"No stack is touched until an operator runs `gitopsd state adopt` (the running containers become the starting point; pins and held revisions are forgotten) "+
		"or restores the record (stop gitopsd, copy a `gitopsd state backup` file to %s, remove its -wal and -shm, start)",
		st.Path(), strings.Join(names, ", "), st.Path()), nil
}

// ownStacks maps each stack that has containers of this gitopsd to the
// revision they run ("" when its containers disagree or carry none).
func ownStacks(ctx context.Context, cli *client.Client, stateDir string) (map[string]string, error) {
	abs, err := filepath.Abs(stateDir)
	if err != nil {
		return nil, fmt.Errorf("state_dir %s: %w", stateDir, err)
	}
	list, err := cli.ContainerList(ctx, client.ContainerListOptions{All: true, Filters: client.Filters{}.Add("label", engine.LabelStack)})
	if err != nil {
		return nil, fmt.Errorf("list gitopsd's containers: %w", err)
	}
	out := map[string]string{}
	for _, c := range list.Items {
		dir := c.Labels[engine.LabelWorkingDir]
		name := c.Labels[engine.LabelStack]
		if name == "" || !strings.HasPrefix(dir, abs+string(filepath.Separator)) {
			continue
		}
		rev := c.Labels[engine.LabelRevision]
		if have, seen := out[name]; seen && have != rev {
			rev = ""
		}
		out[name] = rev
	}
	return out, nil
}

// holdReason is why the daemon touches no stack ("" when it may).
func (d *Daemon) holdReason() string {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.hold
}

// errHeld is what a reconcile returns while the daemon holds.
func (d *Daemon) errHeld() error {
	if h := d.holdReason(); h != "" {
		return fmt.Errorf("holding, waiting for `gitopsd state adopt`: %s", h)
	}
	return nil
}

// StateAdopt ends the hold: each stack this gitopsd's containers run is
// recorded with the revision they run as its last healthy one (where a
// failed deploy rolls back to), and a reconcile follows, which adopts the
// containers as they are and converges as usual. Without a hold it is a
// no-op besides that reconcile.
func (d *Daemon) StateAdopt(ctx context.Context, wait bool) error {
	if d.holdReason() != "" {
		stacks, err := ownStacks(ctx, d.engine.Client(), d.cfg.StateDir)
		if err != nil {
			return fmt.Errorf("state adopt: %w", err)
		}
		for name, rev := range stacks {
			if err := d.rec.Adopt(ctx, name, rev); err != nil {
				return fmt.Errorf("state adopt: %w", err)
			}
		}
		if err := d.store.Checkpoint(ctx); err != nil {
			d.log.Warn("state adopt: checkpoint", "err", err)
		}
		d.mu.Lock()
		d.hold = ""
		d.mu.Unlock()
		d.log.Warn("operator adopted the running stacks; reconciling", "stacks", len(stacks))
	}
	return d.queue(ctx, syncJob{trigger: sync.TriggerManual}, wait)
}

// StateBackup writes a consistent copy of the record to path.
func (d *Daemon) StateBackup(ctx context.Context, path string) error {
	if err := d.store.Backup(ctx, path); err != nil {
		// The packaged unit lets the daemon write only under state_dir
		// (ProtectSystem=strict, a private /tmp).
		return fmt.Errorf("%w (the daemon writes the file itself: name a folder it may write, such as %s)", err, d.cfg.StateDir)
	}
	d.log.Info("state backed up", "file", path)
	return nil
}

// checkpoint copies the WAL into the main database file now; a failure is
// logged, and the store's periodic checkpoint tries again.
func (d *Daemon) checkpoint(ctx context.Context) {
	if err := d.store.Checkpoint(context.WithoutCancel(ctx)); err != nil {
		d.log.Warn("checkpoint the record", "err", err)
	}
}
