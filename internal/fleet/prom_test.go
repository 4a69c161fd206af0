package fleet

import (
	"context"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gitopsd/gitopsd/internal/testenv"
)

// fakeHost serves the metrics one gitopsd host exports, in gitopsd's
// format, for the real Prometheus to scrape.
func fakeHost(t *testing.T, body *atomic.Value) string {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/metrics" {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "text/plain; version=0.0.4")
		fmt.Fprint(w, body.Load().(string))
	}))
	t.Cleanup(srv.Close)
	return strings.TrimPrefix(srv.URL, "http://")
}

func hostMetrics(host, wave string, lines ...string) string {
	s := "# TYPE gitopsd_rollout_info gauge\n" +
		fmt.Sprintf("gitopsd_rollout_info{stack=\"web\",wave=%q,host=%q} 1\n", wave, host) +
		fmt.Sprintf("gitopsd_rollout_info{stack=\"db\",wave=%q,host=%q} 1\n", wave, host)
	return s + strings.Join(lines, "")
}

func waitFor(t *testing.T, limit time.Duration, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// TestGateReadsRealPrometheus: the gate's queries, asked of a real
// Prometheus that scrapes three hosts' gitopsd metrics, give the counts,
// the healthy-since times and the rollbacks the hosts export, and the
// decision follows from them, as the fleet view's rollout queries show;
// once Prometheus is gone the gate says so and holds, or proceeds with
// on_error: proceed.
func TestGateReadsRealPrometheus(t *testing.T) {
	good, bad := "1111111111111111111111111111111111111111", "2222222222222222222222222222222222222222"
	now := time.Now().UTC().Truncate(time.Second)
	canarySince := now.Add(-20 * time.Minute)
	var h0, h1, h2 atomic.Value
	h0.Store(hostMetrics("edge-00", "canary",
		"# TYPE gitopsd_rollout_healthy_since_timestamp_seconds gauge\n",
		fmt.Sprintf("gitopsd_rollout_healthy_since_timestamp_seconds{stack=\"web\",revision=%q,wave=\"canary\",host=\"edge-00\"} %d\n", good, canarySince.Unix()),
		"# TYPE gitopsd_rollout_rolled_back_info gauge\n",
		fmt.Sprintf("gitopsd_rollout_rolled_back_info{stack=\"web\",revision=%q,wave=\"canary\",host=\"edge-00\"} 1\n", bad),
		"# TYPE gitopsd_stack_info gauge\n",
		fmt.Sprintf("gitopsd_stack_info{stack=\"web\",revision=%q,sync=\"Synced\",health=\"Healthy\"} 1\n", good)))
	held := func(host string) string {
		return "# TYPE gitopsd_rollout_held_info gauge\n" +
			fmt.Sprintf("gitopsd_rollout_held_info{stack=\"web\",revision=%q,wave=\"rest\",host=%q,verdict=\"halted\"} 1\n", bad, host)
	}
	h1.Store(hostMetrics("edge-01", "rest", held("edge-01")))
	h2.Store(hostMetrics("edge-02", "rest", held("edge-02")))
	promURL, stopProm := testenv.StartPrometheus(t, []string{fakeHost(t, &h0), fakeHost(t, &h1), fakeHost(t, &h2)})

	ctx := context.Background()
	var asked atomic.Int64
	client := &PromClient{URL: promURL, Timeout: 5 * time.Second, HTTP: &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
		asked.Add(1)
		return http.DefaultTransport.RoundTrip(r)
	})}}
	var obs Observation
	waitFor(t, time.Minute, "the three hosts scraped", func() bool {
		asked.Store(0)
		obs = Observe(ctx, client, "web", good)
		return obs.Err == nil && obs.Waves["canary"].Targeting == 1 && obs.Waves["rest"].Targeting == 2 && len(obs.Waves["canary"].HealthySince) == 1
	})
	if n := asked.Load(); n != 1 {
		t.Errorf("one reading of the gate asked Prometheus %d times, want once", n)
	}
	if got := obs.Waves["canary"].HealthySince[0]; !got.Equal(canarySince) {
		t.Errorf("canary healthy since %s, want %s", got, canarySince)
	}
	if len(obs.RolledBack) != 0 || len(obs.Waves["rest"].HealthySince) != 0 {
		t.Errorf("observation of the good revision: %+v", obs)
	}
	rollout := &Rollout{Waves: []Wave{{Name: "canary", Kind: SelectNames, Names: []string{"edge-00"}}, {Name: "rest", Kind: SelectAll}},
		Soak: 15 * time.Minute, Gate: &Gate{PrometheusURL: promURL, Healthy: 1, OnError: OnErrorHold}}
	if d := Decide(Input{Rollout: rollout, Wave: 1, Revision: good, Now: now, Observed: obs}); d.Held() {
		t.Errorf("good revision, canary healthy 20m of 15m: %s %q", d.Verdict, d.Reason)
	}
	if d := Decide(Input{Rollout: rollout, Wave: 1, Revision: good, Now: canarySince.Add(3 * time.Minute), Observed: obs}); d.Verdict != Wait ||
		d.Reason != "waiting: wave canary 1/1 healthy on 111111111111 for 3m0s of 15m0s soak" {
		t.Errorf("3 minutes into the soak: %s %q", d.Verdict, d.Reason)
	}

	obs = Observe(ctx, client, "web", bad)
	if obs.Err != nil || len(obs.RolledBack) != 1 || obs.RolledBack[0] != (HostRef{"edge-00", "canary"}) {
		t.Fatalf("observation of the bad revision: %+v", obs)
	}
	if d := Decide(Input{Rollout: rollout, Wave: 1, Revision: bad, Now: now, Observed: obs}); d.Verdict != Halted || d.Reason != "held by rollout: 222222222222 rolled back on edge-00 (canary)" {
		t.Errorf("bad revision: %s %q", d.Verdict, d.Reason)
	}
	if obs := Observe(ctx, client, "db", good); obs.Err != nil || len(obs.Waves["canary"].HealthySince) != 0 || obs.Waves["rest"].Targeting != 2 {
		t.Errorf("another stack's observation: %+v", obs)
	}

	// The fleet view's rollout queries, on the same Prometheus: the
	// revision the rollout is on is the held one; the canary rolled it
	// back, the rest hold it.
	v, err := ReadRollout(ctx, client, "web", "")
	if err != nil || v.Revision != bad || len(v.Waves) != 2 || v.Waves[0].Wave != "canary" || len(v.Waves[0].RolledBack) != 1 ||
		len(v.Waves[1].Held) != 2 || v.Waves[1].Held[0] != (HostHeld{"edge-01", "halted"}) || len(v.Waves[1].Other) != 0 {
		t.Errorf("fleet rollout web: %+v, %v", v, err)
	}
	if v, err := ReadRollout(ctx, client, "web", good[:12]); err != nil || v.Revision != good || len(v.Waves[0].Healthy) != 1 || len(v.Waves[1].Other) != 2 {
		t.Errorf("fleet rollout web --revision %s: %+v, %v", good[:12], v, err)
	}

	// The canary stops reporting (its gitopsd died): it still counts in
	// its wave, not healthy, so the next wave waits instead of finding an
	// empty wave and going ahead.
	h0.Store("")
	waitFor(t, time.Minute, "the canary's series to go stale", func() bool {
		obs = Observe(ctx, client, "web", good)
		return obs.Err == nil && len(obs.Waves["canary"].HealthySince) == 0
	})
	if obs.Waves["canary"].Targeting != 1 {
		t.Errorf("a canary that stopped reporting left its wave's count: %+v", obs)
	}
	if d := Decide(Input{Rollout: rollout, Wave: 1, Revision: good, Now: now, Observed: obs}); d.Verdict != Wait {
		t.Errorf("the canary stopped reporting: %s %q, want the rest to wait", d.Verdict, d.Reason)
	}

	stopProm()
	if _, err := ReadRollout(ctx, client, "web", ""); err == nil || !strings.Contains(err.Error(), promURL) {
		t.Errorf("fleet rollout with Prometheus stopped: %v, want an error naming %s", err, promURL)
	}
	obs = Observe(ctx, client, "web", good)
	if obs.Err == nil || !strings.Contains(obs.Err.Error(), promURL) {
		t.Fatalf("Prometheus stopped: observation %+v, want an error naming %s", obs, promURL)
	}
	d := Decide(Input{Rollout: rollout, Wave: 1, Revision: good, Now: now, Observed: obs})
	if d.Verdict != GateError || !strings.HasPrefix(d.Reason, "gate unreachable: ") || !strings.HasSuffix(d.Reason, "(on_error: hold)") {
		t.Errorf("Prometheus stopped, on_error hold: %s %q", d.Verdict, d.Reason)
	}
	rollout.Gate.OnError = OnErrorProceed
	if d := Decide(Input{Rollout: rollout, Wave: 1, Revision: good, Now: now, Observed: obs}); d.Held() {
		t.Errorf("Prometheus stopped, on_error proceed: %s %q", d.Verdict, d.Reason)
	}
}

// TestPromClientErrors: an answer that is not a vector, or not from the
// Prometheus API, is an error naming the server; a server that does not
// answer is cut at the client's timeout.
func TestPromClientErrors(t *testing.T) {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Query().Get("query") {
		case "scalar":
			fmt.Fprint(w, `{"status":"success","data":{"resultType":"scalar","result":[1,"1"]}}`)
		case "bad":
			w.WriteHeader(http.StatusBadRequest)
			fmt.Fprint(w, `{"status":"error","errorType":"bad_data","error":"parse error"}`)
		case "html":
			fmt.Fprint(w, `<html>proxy</html>`)
		case "slow":
			<-r.Context().Done()
		}
	}))
	defer srv.Close()
	c := &PromClient{URL: srv.URL, Timeout: 300 * time.Millisecond}
	for q, want := range map[string]string{
		"scalar": "result is a scalar, want a vector",
		"bad":    "HTTP 400: bad_data: parse error",
		"html":   "HTTP 200, not a Prometheus API answer",
		"slow":   "context deadline exceeded",
	} {
		_, err := c.Query(context.Background(), q)
		if err == nil || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), srv.URL) {
			t.Errorf("query %s: %v, want %q naming %s", q, err, want, srv.URL)
		}
	}
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }
