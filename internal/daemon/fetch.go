package daemon

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/gitopsd/gitopsd/internal/ids"
	"github.com/gitopsd/gitopsd/internal/source"
	"github.com/gitopsd/gitopsd/internal/store"
	"github.com/gitopsd/gitopsd/internal/sync"
)

// fetchResult is what one fetch of the source found.
type fetchResult struct {
	rev source.Revision
	err error
	// fetch is the fetch as a phase of the deployments it leads to.
	fetch sync.Phase
}

// withFetch is ctx carrying the fetch of res as the first phase of the
// deployments that follow, when it fetched.
func withFetch(ctx context.Context, res fetchResult) context.Context {
	if res.err != nil {
		return ctx
	}
	return sync.WithPhases(ctx, res.fetch)
}

// fetch fetches the source, timed.
func (d *Daemon) fetch(ctx context.Context) fetchResult {
	began := time.Now()
	rev, err := d.source.Fetch(ctx)
	return fetchResult{rev: rev, err: err, fetch: sync.Phase{Name: sync.PhaseFetch, At: began, Took: time.Since(began), Detail: ids.Short(rev.SHA)}}
}

// startFetch fetches the source beside the loop and sends the result to
// out. The source bounds the fetch (source.timeout).
func (d *Daemon) startFetch(ctx context.Context, out chan<- fetchResult) {
	d.loop.fetchStarted(time.Now())
	go func() { out <- d.fetch(ctx) }()
}

// settleFetch records what a fetch found (rev, or ferr) and says which
// head to converge to: the fetched one once trusted, else the last one, so
// the host still heals offline ("" when none is known yet). fetchErr is
// why the branch's head could not be fetched (nil when it was); err stops
// the reconcile. What the store cannot hold of the source's state, memory
// holds for status.
func (d *Daemon) settleFetch(ctx context.Context, rev source.Revision, ferr error) (head string, fetchErr, err error) {
	prev, err := d.store.SourceState(ctx)
	if err != nil {
		d.loop.fetchEnded(errorText(ferr))
		return "", nil, fmt.Errorf("read the source state: %w", err)
	}
	state := store.SourceState{URL: source.Redact(d.cfg.Source.URL), Branch: d.cfg.Source.Branch, Head: prev.Head, FetchedAt: prev.FetchedAt}
	if ferr != nil {
		state.Error = ferr.Error()
		d.loop.fetchEnded(state.Error)
		d.log.Error("fetch failed", "err", ferr)
		d.metrics.FetchFailed()
		d.noteStore("record the source state", d.store.PutSourceState(ctx, state))
		return prev.Head, ferr, nil
	}
	if d.signers != nil {
		sig, verr := d.source.Verify(ctx, rev.SHA, d.signers)
		if verr == nil {
			verr = d.checkDescends(ctx, rev.SHA, prev)
		}
		// Each refused head is counted and logged once, not at every poll.
		if verr == nil || rev.SHA != d.refusedHead {
			d.metrics.HeadVerified(verr == nil)
		}
		if verr != nil {
			// The last trusted head stays the one stacks converge to; the
			// refused one is not recorded as a revision.
			state.Error = fmt.Sprintf("head %s not applied: %v", ids.Short(rev.SHA), verr)
			if errors.Is(verr, source.ErrRewritten) {
				state.Error = verr.Error() // it names the head itself
			}
			d.loop.fetchEnded(state.Error)
			if rev.SHA != d.refusedHead {
				d.log.Error("head refused", "revision", rev.SHA, "err", verr)
				d.refusedHead = rev.SHA
			}
			d.noteStore("record the source state", d.store.PutSourceState(ctx, state))
			if prev.Head == "" {
				return "", nil, errors.New(state.Error)
			}
			return prev.Head, nil, nil
		}
		d.refusedHead = ""
		if rev.SHA != prev.Head {
			d.log.Info("head verified", "revision", rev.SHA, "kind", sig.Kind, "signer", sig.Signer, "key", sig.Fingerprint)
		}
	}
	d.loop.fetchEnded("")
	state.Head, state.FetchedAt, state.Error = rev.SHA, time.Now().UTC(), ""
	if err := d.store.RecordRevision(ctx, store.Revision{SHA: rev.SHA, Message: rev.Message, Author: rev.Author, CommittedAt: rev.Time, SeenAt: time.Now().UTC()}); err != nil {
		// Deployments name their revisions: none is made without it.
		d.noteStore("record revision "+ids.Short(rev.SHA), err)
		return "", nil, fmt.Errorf("record revision %s: %w", ids.Short(rev.SHA), err)
	}
	if rev.SHA != prev.Head {
		d.log.Info("new revision", "revision", rev.SHA, "message", rev.Message)
	}
	d.noteStore("record the source state", d.store.PutSourceState(ctx, state))
	return rev.SHA, nil, nil
}

func errorText(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}
