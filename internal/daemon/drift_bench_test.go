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
// closed as healed (the heal's health gate included). Medians; the spread
// is logged.
func BenchmarkDriftHealed(b *testing.B) {
	skipWithoutTime(b)
	for range b.N {
		h := newDriftHarness(b, "heal", false)
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
		b.Logf("docker stop healed %d/%d times; event to serving %v (min %v, max %v); event to drift closed %v (min %v, max %v)",
			len(toServing), driftSamples, toServing[len(toServing)/2], toServing[0], toServing[len(toServing)-1],
			toClosed[len(toClosed)/2], toClosed[0], toClosed[len(toClosed)-1])
	}
}

// stopAndTime stops the web container and times the way back from its die
// event. ok is false when it did not come back within 30s.
func (h *driftHarness) stopAndTime(b *testing.B) (serving, closed time.Duration, ok bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	id := h.web()
	stream := h.docker.Events(ctx, client.EventsListOptions{Filters: client.Filters{}.Add("type", "container").Add("container", id).Add("event", "die")})
	if _, err := h.docker.ContainerStop(ctx, id, client.ContainerStopOptions{}); err != nil {
		b.Fatal(err)
	}
	var died time.Time
	select {
	case m := <-stream.Messages:
		died = time.Unix(0, m.TimeNano)
	case err := <-stream.Err:
		b.Fatalf("events: %v", err)
	case <-ctx.Done():
		b.Fatal("no die event")
	}
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
