package drift

import (
	"sync"
	"testing"
	"time"
)

// fires records the pokes a coalescer makes.
type fires struct {
	mu  sync.Mutex
	got []string
}

func (f *fires) fire(project string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.got = append(f.got, project)
}

func (f *fires) list() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.got...)
}

// settled waits until the coalescer holds no burst.
func settled(t *testing.T, c *coalescer) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		c.mu.Lock()
		n := len(c.pending)
		c.mu.Unlock()
		if n == 0 {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d bursts still pending", n)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// The first event of a project pokes it before add returns: a `docker
// stop` is healed without waiting for the stream to settle. A lone event
// pokes once.
func TestCoalescerFiresAtTheFirstEvent(t *testing.T) {
	var f fires
	c := &coalescer{fire: f.fire, pending: map[string]*burst{}}
	c.add("web")
	if got := f.list(); len(got) != 1 || got[0] != "web" {
		t.Fatalf("pokes right after the first event: %q, want [web]", got)
	}
	settled(t, c)
	if got := f.list(); len(got) != 1 {
		t.Fatalf("pokes for one event: %q, want one", got)
	}
}

// The rest of a burst (docker rm -f: kill, die, stop, destroy) is one more
// poke once it settled, so the check sees the state the burst left.
func TestCoalescerPokesOnceMoreAfterABurst(t *testing.T) {
	var f fires
	c := &coalescer{fire: f.fire, pending: map[string]*burst{}}
	for range 4 {
		c.add("web")
	}
	c.add("db")
	settled(t, c)
	web, db := 0, 0
	for _, p := range f.list() {
		switch p {
		case "web":
			web++
		case "db":
			db++
		}
	}
	if web != 2 || db != 1 {
		t.Fatalf("pokes: web %d, db %d (%q); want web 2 (first event, settled burst), db 1", web, db, f.list())
	}
}
