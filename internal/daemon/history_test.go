package daemon

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/gitopsd/gitopsd/internal/store"
)

// TestHistoryStepsJSON: `history --json` carries each step's replica and
// duration, as the store recorded them.
func TestHistoryStepsJSON(t *testing.T) {
	dep := store.Deployment{ID: 7, Stack: "web", Trigger: "poll", To: "abc", Outcome: "succeeded", Steps: []store.Step{
		{Action: "create-network", Container: "web_default", Duration: 12 * time.Millisecond},
		{Action: "recreate", Service: "app", Replica: 2, Container: "web-app-2", Detail: "image changed", Duration: 3104 * time.Millisecond},
		{Action: "create", Service: "db", Container: "fixed-name", Error: "boom"},
		{Action: "remove", Service: "app", Container: "web-app-x"},
	}}
	got := deploymentJSON(dep)
	want := []struct {
		replica int
		ms      int64
	}{{0, 12}, {2, 3104}, {0, 0}, {0, 0}}
	if len(got.Steps) != len(want) {
		t.Fatalf("steps %+v", got.Steps)
	}
	for i, w := range want {
		if s := got.Steps[i]; s.Replica != w.replica || s.DurationMS != w.ms {
			t.Errorf("step %d: replica %d, %dms; want %d, %dms", i, s.Replica, s.DurationMS, w.replica, w.ms)
		}
	}
	if s := got.Steps[2]; s.Error != "boom" || s.Container != "fixed-name" || s.Service != "db" {
		t.Errorf("step 2 lost fields: %+v", s)
	}
	b, err := json.Marshal(got)
	if err != nil {
		t.Fatal(err)
	}
	for _, key := range []string{`"duration_ms":3104`, `"replica":2`, `"detail":"image changed"`} {
		if !strings.Contains(string(b), key) {
			t.Errorf("history JSON lacks %s: %s", key, b)
		}
	}
}
