package daemon

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	gosync "sync"
	"testing"
	"time"

	"github.com/gitopsd/gitopsd/internal/webhook"
)

// TestWebhookClosesSlowConnections: 300 connections to the daemon's webhook
// server each send a wrong signature and then a 1 MiB body at 10 KiB/s
// (it would take 100 s). Every one is closed within twice the server's
// read timeout of being opened: the server reads a body only within its
// timeouts and only for a bounded number of requests at once, and turns
// the others away. The heap before, at its peak and after is logged; the
// server answers again once the flood is over.
func TestWebhookClosesSlowConnections(t *testing.T) {
	h := newHarness(t, nil)
	addr := h.listenWebhook("s3cret")
	runDaemon(t, h)

	const conns = 300
	lim := webhook.DefaultLimits()
	bound := 2 * lim.ReadTimeout
	header := fmt.Sprintf("POST /webhook HTTP/1.1\r\nHost: %s\r\nX-GitHub-Event: push\r\nX-Hub-Signature-256: sha256=%s\r\nContent-Length: %d\r\n\r\n",
		addr, strings.Repeat("0", 64), webhook.MaxBody)
	chunk := strings.Repeat("x", 1024)

	before := heapInUse()
	var peak heapPeak
	stopSampling := peak.sample(before)

	type result struct {
		open   time.Duration // how long the connection stayed open
		closed bool          // by the server, within bound
		err    error
	}
	results := make([]result, conns)
	var wg gosync.WaitGroup
	began := time.Now()
	for i := range conns {
		wg.Go(func() {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				results[i].err = err
				return
			}
			defer conn.Close()
			opened := time.Now()
			// Past the bound the connection counts as held open; the
			// client then gives up, so the test ends either way.
			_ = conn.SetDeadline(opened.Add(bound + 5*time.Second))
			closed := make(chan struct{})
			go func() {
				defer close(closed)
				_, _ = io.Copy(io.Discard, conn) // until the server closes it
			}()
			if _, err := io.WriteString(conn, header); err != nil {
				results[i].err = err
				return
			}
			tick := time.NewTicker(100 * time.Millisecond) // 10 KiB/s: the slow sender under test
			defer tick.Stop()
		send:
			for {
				select {
				case <-closed:
					break send
				case <-tick.C:
					if _, err := io.WriteString(conn, chunk); err != nil {
						<-closed
						break send
					}
				}
			}
			results[i].open = time.Since(opened)
			results[i].closed = results[i].open <= bound
		})
	}
	wg.Wait()
	took := time.Since(began)
	stopSampling()
	after := heapInUse()
	t.Logf("heap in use: %.1f MiB before, %.1f MiB at the peak (+%.1f), %.1f MiB after the %d connections closed; all done in %s",
		mib(before), mib(peak.max()), mib(peak.max()-before), mib(after), conns, took.Round(time.Millisecond))

	var held, failed int
	var longest time.Duration
	for _, r := range results {
		switch {
		case r.err != nil:
			failed++
			t.Logf("connection failed: %v", r.err)
		case !r.closed:
			held++
		}
		longest = max(longest, r.open)
	}
	t.Logf("longest-open connection: %s (read timeout %s, bound %s)", longest.Round(time.Millisecond), lim.ReadTimeout, bound)
	if failed > conns/10 {
		t.Fatalf("%d of %d connections could not even send their headers", failed, conns)
	}
	if held > 0 {
		t.Fatalf("%d of %d slow connections with a wrong signature were still open %s after they opened (read timeout %s)", held, conns, bound, lim.ReadTimeout)
	}

	// The flood is over: the server judges requests again.
	req, _ := http.NewRequest(http.MethodPost, "http://"+addr+"/webhook", strings.NewReader(`{"ref":"refs/heads/main"}`))
	req.Header.Set("X-Hub-Signature-256", "sha256="+strings.Repeat("0", 64))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("after the flood a wrongly signed push got %d, want 401", resp.StatusCode)
	}
}

// heapInUse is the heap in use after a collection.
func heapInUse() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapInuse
}

// heapPeak samples the heap in use while a test runs.
type heapPeak struct {
	mu   gosync.Mutex
	peak uint64
}

// sample reads the heap every 100 ms until the returned stop is called.
func (p *heapPeak) sample(start uint64) (stop func()) {
	p.peak = start
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		tick := time.NewTicker(100 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-done:
				return
			case <-tick.C:
				var m runtime.MemStats
				runtime.ReadMemStats(&m)
				p.mu.Lock()
				p.peak = max(p.peak, m.HeapInuse)
				p.mu.Unlock()
			}
		}
	}()
	return func() { close(done); <-finished }
}

func (p *heapPeak) max() uint64 {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.peak
}

func mib(b uint64) float64 { return float64(b) / (1 << 20) }
