package daemon

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/moby/moby/client"

	"github.com/gitopsd/gitopsd/internal/testenv"
)

// driftSamples is how many drifts one run of BenchmarkDriftHealed times.
const driftSamples = 7

// BenchmarkDriftHealed measures how fast a drift is healed: a running
// gitopsd, a healthchecked web service on a host port, and `docker stop` of
// its container, driftSamples times. From Docker's die event (its own
// timestamp) to Docker's start event of the container (ms-event-to-start),
// to the first answer of the service (a client trying all along, as
// users would), and to the drift's row closed as healed. Then, gitopsd
// stopped, the floor no daemon can beat: the same container stopped and
// started by hand at its die event, timed the same way
// (ms-docker-start-event, ms-docker-start-to-serving). Medians; the spread
// is logged.
func BenchmarkDriftHealed(b *testing.B) {
	skipWithoutTime(b)
	for range b.N {
		h := newDriftHarness(b, "heal", false)
		quick := h.d.drifts.QuickHeals()
		toStart, toServing, toClosed := h.timeStops(b, nil)
		if len(toServing) == 0 {
			b.Log("no drift was healed: nothing to report")
			return
		}
		reportSamples(b, "ms-event-to-start", toStart)
		reportSamples(b, "ms-event-to-serving", toServing)
		reportSamples(b, "ms-event-to-healed", toClosed)
		b.Logf("quick heals (started at the event, no load or plan): %d of %d", h.d.drifts.QuickHeals()-quick, len(toServing))

		h.halt() // the floor: nobody but the benchmark starts the container now
		floorStart, floorServing, _ := h.timeStops(b, func(ctx context.Context, id string) {
			if _, err := h.docker.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
				b.Fatalf("start by hand: %v", err)
			}
		})
		if len(floorServing) == 0 {
			b.Log("the container never served again after a start by hand: no floor to report")
			return
		}
		reportSamples(b, "ms-docker-start-event", floorStart)
		reportSamples(b, "ms-docker-start-to-serving", floorServing)
	}
}

// timeStops runs stopAndTime driftSamples times and returns the times of
// the stops that came back.
func (h *driftHarness) timeStops(b *testing.B, start func(ctx context.Context, id string)) (toStart, toServing, toClosed []time.Duration) {
	for range driftSamples {
		if t, ok := h.stopAndTime(b, start); ok {
			toStart = append(toStart, t.start)
			toServing = append(toServing, t.serving)
			toClosed = append(toClosed, t.closed)
		}
	}
	return toStart, toServing, toClosed
}

// reportSamples records every sample of metric, reports their median and logs
// their spread.
func reportSamples(b *testing.B, metric string, samples []time.Duration) {
	testenv.BenchSamples(b, metric, msEach(samples)...)
	slices.Sort(samples)
	b.ReportMetric(ms(samples[len(samples)/2]), metric)
	b.Logf("%s: %v (min %v, max %v, %d samples)", metric, samples[len(samples)/2], samples[0], samples[len(samples)-1], len(samples))
}

// comeback is how long after its die event a stopped container was started
// again (Docker's start event), served again, and its drift closed.
type comeback struct{ start, serving, closed time.Duration }

// stopAndTime stops the web container and times its way back from the die
// event: start, when not nil, starts it by hand at that event (and no
// drift is waited for). ok is false when it did not come back within 30s.
func (h *driftHarness) stopAndTime(b *testing.B, start func(ctx context.Context, id string)) (t comeback, ok bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id := h.web()
	stream := h.docker.Events(ctx, client.EventsListOptions{Filters: client.Filters{}.Add("type", "container").Add("container", id).
		Add("event", "die").Add("event", "start")})
	if _, err := h.docker.ContainerStop(ctx, id, client.ContainerStopOptions{}); err != nil {
		b.Fatal(err)
	}
	event := func(action string) time.Time {
		for {
			select {
			case m := <-stream.Messages:
				if string(m.Action) == action {
					return time.Unix(0, m.TimeNano)
				}
			case err := <-stream.Err:
				b.Fatalf("events: %v", err)
			case <-ctx.Done():
				b.Fatalf("no %s event", action)
			}
		}
	}
	died := event("die")
	served := make(chan error, 1)
	go func() { served <- servesAgain(h.port, 30*time.Second) }()
	if start != nil {
		start(ctx, id)
	}
	t.start = event("start").Sub(died)
	if err := <-served; err != nil {
		b.Logf("not serving again: %v", err)
		return t, false
	}
	t.serving = time.Since(died)
	if start != nil {
		return t, true
	}
	for {
		open, err := h.d.store.OpenDrifts(ctx, h.stack)
		if err != nil {
			b.Fatal(err)
		}
		if len(open) == 0 {
			t.closed = time.Since(died)
			return t, true
		}
		if ctx.Err() != nil {
			b.Logf("drift still open: %+v", open)
			return t, false
		}
		time.Sleep(pollEvery) // the resolution of the measurement
	}
}

// servesAgain waits until the web service on port answers v1 again after
// a stop. A try goes out every pollEvery on a connection of its own, each
// allowed a second, and the first answer ends the wait: a try sent while
// the container is down can lose its SYN to the port mapping of a
// container that is gone, and the kernel sends it again only a second
// later, so one try at a time would time the client's retransmission,
// not the service.
func servesAgain(port int, within time.Duration) error {
	c := &http.Client{Timeout: time.Second, Transport: &http.Transport{DisableKeepAlives: true}}
	url := fmt.Sprintf("http://127.0.0.1:%d/", port)
	answered := make(chan struct{}, 1)
	try := func() {
		resp, err := c.Get(url)
		if err != nil {
			return
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if strings.TrimSpace(string(b)) == "v1" {
			select {
			case answered <- struct{}{}:
			default:
			}
		}
	}
	tick := time.NewTicker(pollEvery)
	defer tick.Stop()
	deadline := time.After(within)
	go try()
	for {
		select {
		case <-answered:
			return nil
		case <-tick.C:
			go try()
		case <-deadline:
			return fmt.Errorf("no answer v1 on port %d within %s", port, within)
		}
	}
}
