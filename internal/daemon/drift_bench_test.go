package daemon

import (
	"context"
	"slices"
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
// timestamp) to the first answer of the service, and to the drift's row
// closed as healed (the heal's health gate included). Then, gitopsd
// stopped, the floor no daemon can beat: the same container stopped and
// started by hand at its die event, to the first answer
// (ms-docker-start-to-serving). Medians; the spread is logged.
func BenchmarkDriftHealed(b *testing.B) {
	skipWithoutTime(b)
	for range b.N {
		h := newDriftHarness(b, "heal", false)
		quick := h.d.drifts.QuickHeals()
		var toServing, toClosed []time.Duration
		for range driftSamples {
			serving, closed, ok := h.stopAndTime(b)
			if !ok {
				continue
			}
			toServing = append(toServing, serving)
			toClosed = append(toClosed, closed)
		}
		if len(toServing) == 0 {
			b.Log("no drift was healed: nothing to report")
			return
		}
		testenv.BenchSamples(b, "ms-event-to-serving", msEach(toServing)...)
		testenv.BenchSamples(b, "ms-event-to-healed", msEach(toClosed)...)
		slices.Sort(toServing)
		slices.Sort(toClosed)
		b.ReportMetric(ms(toServing[len(toServing)/2]), "ms-event-to-serving")
		b.ReportMetric(ms(toClosed[len(toClosed)/2]), "ms-event-to-healed")
		b.Logf("quick heals (started at the event, no load or plan): %d of %d", h.d.drifts.QuickHeals()-quick, len(toServing))
		b.Logf("docker stop healed %d/%d times; event to serving %v (min %v, max %v); event to drift closed %v (min %v, max %v)",
			len(toServing), driftSamples, toServing[len(toServing)/2], toServing[0], toServing[len(toServing)-1],
			toClosed[len(toClosed)/2], toClosed[0], toClosed[len(toClosed)-1])

		h.halt() // the floor: nobody but the benchmark starts the container now
		var floor []time.Duration
		for range driftSamples {
			if d, ok := h.startByHand(b); ok {
				floor = append(floor, d)
			}
		}
		if len(floor) == 0 {
			b.Log("the container never served again after a start by hand: no floor to report")
			return
		}
		testenv.BenchSamples(b, "ms-docker-start-to-serving", msEach(floor)...)
		slices.Sort(floor)
		b.ReportMetric(ms(floor[len(floor)/2]), "ms-docker-start-to-serving")
		b.Logf("floor, started by hand at the die event: event to serving %v (min %v, max %v)", floor[len(floor)/2], floor[0], floor[len(floor)-1])
	}
}

// startByHand stops the web container, starts it again as soon as its die
// event arrives, and times the way back from that event, as stopAndTime
// does. ok is false when it did not serve within 30s.
func (h *driftHarness) startByHand(b *testing.B) (serving time.Duration, ok bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id := h.web()
	died := h.stopAndWaitDie(ctx, b, id)
	if _, err := h.docker.ContainerStart(ctx, id, client.ContainerStartOptions{}); err != nil {
		b.Fatalf("start by hand: %v", err)
	}
	if _, err := waitServes(h.port, "v1", 30*time.Second); err != nil {
		b.Logf("not serving again: %v", err)
		return 0, false
	}
	return time.Since(died), true
}

// stopAndWaitDie stops container id and returns the time of its die event.
func (h *driftHarness) stopAndWaitDie(ctx context.Context, b *testing.B, id string) time.Time {
	stream := h.docker.Events(ctx, client.EventsListOptions{Filters: client.Filters{}.Add("type", "container").Add("container", id).Add("event", "die")})
	if _, err := h.docker.ContainerStop(ctx, id, client.ContainerStopOptions{}); err != nil {
		b.Fatal(err)
	}
	select {
	case m := <-stream.Messages:
		return time.Unix(0, m.TimeNano)
	case err := <-stream.Err:
		b.Fatalf("events: %v", err)
	case <-ctx.Done():
		b.Fatal("no die event")
	}
	return time.Time{}
}

// stopAndTime stops the web container and times the way back from its die
// event. ok is false when it did not come back within 30s.
func (h *driftHarness) stopAndTime(b *testing.B) (serving, closed time.Duration, ok bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	died := h.stopAndWaitDie(ctx, b, h.web())
	if _, err := waitServes(h.port, "v1", 30*time.Second); err != nil {
		b.Logf("not serving again: %v", err)
		return 0, 0, false
	}
	serving = time.Since(died)
	for {
		open, err := h.d.store.OpenDrifts(ctx, h.stack)
		if err != nil {
			b.Fatal(err)
		}
		if len(open) == 0 {
			return serving, time.Since(died), true
		}
		if ctx.Err() != nil {
			b.Logf("drift still open: %+v", open)
			return 0, 0, false
		}
		time.Sleep(pollEvery) // the resolution of the measurement
	}
}
