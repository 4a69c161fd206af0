package api

import (
	"context"
	"errors"
	"slices"
	"strings"
	"testing"
)

func TestSuggest(t *testing.T) {
	known := []string{"web", "db", "monitoring", "monitoring-agent", "proxy"}
	for _, c := range []struct {
		name string
		want []string
	}{
		{"wbe", []string{"web"}},
		{"web2", []string{"web"}},
		{"monitorin", []string{"monitoring", "monitoring-agent"}},
		{"DB", []string{"db"}},
		// Nothing near, few stacks: all of them, so the user sees what there is.
		{"zzzzzzzzzz", []string{"db", "monitoring", "proxy", "web", "monitoring-agent"}},
	} {
		if got := Suggest(c.name, known); !slices.Equal(got, c.want) {
			t.Errorf("Suggest(%q) = %v, want %v", c.name, got, c.want)
		}
	}
	many := []string{"a1", "b2", "c3", "d4", "e5", "f6"}
	if got := Suggest("zzzzzzzzzz", many); len(got) != 0 {
		t.Errorf("nothing near among many: %v", got)
	}
}

func TestCheckStack(t *testing.T) {
	if err := CheckStack("web", []string{"db", "web"}); err != nil {
		t.Fatal(err)
	}
	err := CheckStack("wbe", []string{"db", "web"})
	var u *UnknownStackError
	if !errors.As(err, &u) || !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), `unknown stack "wbe"; did you mean web?`) {
		t.Fatalf("CheckStack: %v", err)
	}
	if err := CheckStack("web", nil); !strings.Contains(err.Error(), "no stacks yet") {
		t.Fatalf("no stacks: %v", err)
	}
}

// namedBackend knows the stacks web and db, and answers a sync with held
// stacks as the daemon does.
type namedBackend struct {
	syncBackend
	held *HeldError
}

func (b *namedBackend) StackNames(context.Context) ([]string, error) {
	return []string{"db", "web"}, nil
}

func (b *namedBackend) History(context.Context, string, int) ([]Deployment, error) {
	return []Deployment{}, nil
}

func (b *namedBackend) Sync(ctx context.Context, stack string, retry, wait bool) error {
	_ = b.syncBackend.Sync(ctx, stack, retry, wait)
	if b.held == nil {
		return nil
	}
	h := *b.held
	h.Queued = !wait
	return &h
}

// TestServerRefusesUnknownStacks: a request naming a stack the backend
// does not know is answered 404 with the nearest names, before the
// backend is asked; a sync is judged by the backend itself.
func TestServerRefusesUnknownStacks(t *testing.T) {
	b := &namedBackend{}
	c := NewClient(serve(t, b))
	ctx := context.Background()
	if _, err := c.History(ctx, "web", 0); err != nil {
		t.Fatal(err)
	}
	if _, err := c.History(ctx, "wbe", 0); err == nil || !strings.Contains(err.Error(), "did you mean web?") {
		t.Fatalf("history of an unknown stack: %v", err)
	}
	if err := c.Rollback(ctx, "wbe", "", false, true); err == nil || !strings.Contains(err.Error(), `unknown stack "wbe"`) {
		t.Fatalf("rollback of an unknown stack: %v", err)
	}
	names, err := c.StackNames(ctx)
	if err != nil || !slices.Equal(names, []string{"db", "web"}) {
		t.Fatalf("stack names: %v %v", names, err)
	}

	b.held = &HeldError{Stacks: []HeldStack{{Stack: "web", Revision: "abc", Reason: "revision abc failed its health gate"}}}
	res, err := c.SyncResult(ctx, "", false, true)
	if err == nil || !strings.Contains(err.Error(), "stack web is held") || len(res.Held) != 1 {
		t.Fatalf("sync --wait leaving web held: %+v, %v", res, err)
	}
	res, err = c.SyncResult(ctx, "", false, false)
	if err != nil || len(res.Held) != 1 || res.Held[0].Stack != "web" {
		t.Fatalf("queued sync with web held: %+v, %v", res, err)
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.calls) != 2 {
		t.Fatalf("the backend got %d syncs, want 2 (the refused requests never reach it)", len(b.calls))
	}
}
